import assert from "node:assert/strict";
import { formatDouble, quoteString, toQemuJson } from "../../qmp/mod.ts";

const TRANSCRIPTS = new URL("../../../shared/reference/transcripts/", import.meta.url);

/** QAPI member orders (qemu inserts members in schema order; the order shows only within a bucket). */
const SCHEMA_ORDER = [
  // BlockDeviceInfo
  "file",
  "node-name",
  "ro",
  "drv",
  "backing_file",
  "backing_file_depth",
  "encrypted",
  "detect_zeroes",
  "bps",
  "bps_rd",
  "bps_wr",
  "iops",
  "iops_rd",
  "iops_wr",
  "image",
  "cache",
  "write_threshold",
  // ImageInfo
  "filename",
  "format",
  "dirty-flag",
  "actual-size",
  "virtual-size",
  "cluster-size",
  "backing-filename",
  "full-backing-filename",
  "backing-filename-format",
  "format-specific",
  // ImageInfoSpecificQCow2 and the union
  "type",
  "data",
  "compat",
  "extended-l2",
  "lazy-refcounts",
  "corrupt",
  "refcount-bits",
  "compression-type",
  // VersionTriple
  "major",
  "minor",
  "micro",
  // BlockdevCacheInfo
  "writeback",
  "direct",
  "no-flush",
];

function inSchemaOrder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(inSchemaOrder);
  if (v && typeof v === "object") {
    const keys = Object.keys(v).sort((a, b) => SCHEMA_ORDER.indexOf(a) - SCHEMA_ORDER.indexOf(b));
    return Object.fromEntries(
      keys.map((k) => [k, inSchemaOrder((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}

Deno.test("toQemuJson() writes qemu's recorded replies and events byte for byte", async () => {
  let checked = 0;
  for (const name of ["protocol.txt", "stream-args.txt", "stream-full.txt", "stream-cancel.txt"]) {
    const text = await Deno.readTextFile(new URL(name, TRANSCRIPTS));
    for (const line of text.split("\n")) {
      if (!line.startsWith("<- ")) continue;
      const raw = line.slice(3);
      assert.equal(toQemuJson(inSchemaOrder(JSON.parse(raw))), raw);
      checked++;
    }
  }
  assert.ok(checked > 100, `checked ${checked} lines`);
});

Deno.test("formatDouble() prints like C's %.17g", () => {
  const cases: [number, string][] = [
    [0.1, "0.10000000000000001"],
    [1.5, "1.5"],
    [100, "100"],
    [1e16, "10000000000000000"],
    [1e17, "1e+17"],
    [1e-5, "1.0000000000000001e-05"],
    [-5e-324, "-4.9406564584124654e-324"],
    [Infinity, "inf"],
    [-Infinity, "-inf"],
    [-0, "-0"],
  ];
  for (const [x, s] of cases) assert.equal(formatDouble(x), s);
});

Deno.test("quoteString() escapes like qemu: control, DEL and non-ASCII as upper-case \\uXXXX", () => {
  assert.equal(
    quoteString('a"\\/\b\f\n\r\t\u0001\u007f\u00e9😀'),
    '"a\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u007F\\u00E9\\uD83D\\uDE00"',
  );
});
