import assert from "node:assert/strict";
import fc from "fast-check";
import { formatG3, formatHumanSize, formatIoSize, parseSize } from "../../cli/size.ts";
import { seeds } from "../_tools.ts";

Deno.test("parseSize() reads qemu's size syntax", () => {
  const cases: [string, bigint | null][] = [
    ["0", 0n],
    ["4096", 4096n],
    ["1k", 1024n],
    ["1K", 1024n],
    ["1m", 1048576n],
    ["1M", 1048576n],
    ["2g", 2147483648n],
    ["1t", 1099511627776n],
    ["1P", 1125899906842624n],
    ["1E", 1152921504606846976n],
    ["1.5k", 1536n],
    ["1.5M", 1572864n],
    ["1.0000001k", 1024n],
    ["0x100", 256n],
    ["0x10k", 16384n],
    ["100b", 100n],
    [" 5", 5n],
    ["1.5", null],
    ["1.5b", null],
    ["0.5", null],
    ["1e3", null],
    ["5x", null],
    ["0x1.8k", null],
    ["-1", null],
    ["", null],
    ["1k5", null],
  ];
  for (const [text, want] of cases) assert.equal(parseSize(text), want, text);
});

Deno.test("parseSize() reads back every whole number with every suffix", () => {
  for (const seed of seeds()) {
    fc.assert(
      fc.property(fc.nat(), fc.constantFrom("", "b", "k", "M", "G", "T"), (n, suffix) => {
        const shift = { "": 0n, b: 0n, k: 10n, M: 20n, G: 30n, T: 40n }[suffix]!;
        assert.equal(parseSize(`${n}${suffix}`), BigInt(n) << shift);
      }),
      { seed, numRuns: 200 },
    );
  }
});

Deno.test("formatG3() matches C's %.3g", () => {
  const cases: [number, string][] = [
    [0, "0"],
    [4, "4"],
    [580, "580"],
    [1.5, "1.5"],
    [0.9765625, "0.977"],
    [97.65625, "97.7"],
    [999.7, "1e+03"],
    [123.456, "123"],
    [10, "10"],
    [0.0001, "0.0001"],
    [0.00001, "1e-05"],
  ];
  for (const [value, want] of cases) assert.equal(formatG3(value), want, String(value));
});

Deno.test("formatHumanSize() prints sizes like qemu-img info", () => {
  const cases: [number, string][] = [
    [0, "0 B"],
    [512, "512 B"],
    [1000, "0.977 KiB"],
    [4096, "4 KiB"],
    [100352, "98 KiB"],
    [266240, "260 KiB"],
    [593920, "580 KiB"],
    [1572864, "1.5 MiB"],
    [4194304, "4 MiB"],
    [10737418240, "10 GiB"],
    [70368744177664, "64 TiB"],
  ];
  for (const [bytes, want] of cases) assert.equal(formatHumanSize(bytes), want, String(bytes));
});

Deno.test("formatIoSize() prints sizes like qemu-io", () => {
  assert.equal(formatIoSize(4096), "4 KiB");
  assert.equal(formatIoSize(1000), "1000 bytes");
  assert.equal(formatIoSize(100000), "97.656 KiB");
  assert.equal(formatIoSize(1536), "1.500 KiB");
  assert.equal(formatIoSize(1048576), "1 MiB");
  assert.equal(formatIoSize(0), "0 bytes");
});
