import assert from "node:assert/strict";
import { MemoryStorage } from "../../io/mod.ts";
import {
  decodeHeader,
  encodeHeader,
  QedFormatError,
  type QedHeader,
  QedImage,
} from "../../qed/mod.ts";
import { RecordingStorage, setU64 } from "./_helpers.ts";

const K = 1024;

/** A default 10 MiB image with cluster 0 written: data 0x50000, L2 0x60000, file 0xa0000. */
async function sample(): Promise<Uint8Array> {
  const disk = new MemoryStorage();
  await QedImage.create(disk, { size: 10 << 20 });
  const image = await QedImage.open(disk);
  await image.write(0, new Uint8Array(64 * K).fill(1));
  await image.close();
  return disk.snapshot();
}

function withHeader(bytes: Uint8Array, over: Partial<QedHeader>): Uint8Array {
  const out = bytes.slice();
  out.set(encodeHeader({ ...decodeHeader(bytes), ...over }));
  return out;
}

/** Opens read-write on a store that fails the test if written, expecting `message`. */
async function refuses(bytes: Uint8Array, message: string): Promise<void> {
  const disk = new RecordingStorage(new MemoryStorage(bytes));
  disk.forbidWrites = true;
  await assert.rejects(QedImage.open(disk), (e) => {
    assert.ok(e instanceof QedFormatError, `${e}`);
    assert.equal(e.message, message);
    return true;
  });
  assert.deepEqual(disk.inner.snapshot(), bytes, "a failed open leaves the file alone");
}

Deno.test("`QedImage.open()` refuses truncated files with qemu's texts", async () => {
  const good = await sample();
  await refuses(new Uint8Array(0), "Image not in QED format");
  await refuses(good.slice(0, 2), "Image not in QED format");
  await refuses(good.slice(0, 3), "QED cluster size is invalid"); // the 4th magic byte is 0 anyway
  await refuses(good.slice(0, 5), "QED cluster size is invalid");
  await refuses(good.slice(0, 10), "QED table offset is invalid");
  await refuses(good.slice(0, 64), "QED table offset is invalid");
  await refuses(good.slice(0, 0x50000 - 1), "QED table offset is invalid");
  // Cut inside the L2 table: the table offset is now invalid when used.
  const cut = new MemoryStorage(good.slice(0, 0x70000));
  const image = await QedImage.open(cut, { readOnly: true });
  await assert.rejects(image.read(0, new Uint8Array(512)), {
    name: "QedIoError",
    code: "QED_INVALID_OFFSET",
  });
  assert.equal((await image.check()).corruptions, 1);
});

Deno.test("`QedImage.open()` refuses corrupt headers and unknown features with qemu's texts", async () => {
  const good = await sample();
  const cases: [Partial<QedHeader>, string][] = [
    [{ magic: 0x00444552 }, "Image not in QED format"],
    [{ features: 0x08n }, "Unsupported QED features: 8"],
    [{ features: 0x8000_0000_0000_0000n }, "Unsupported QED features: 8000000000000000"],
    [{ clusterSize: 0 }, "QED cluster size is invalid"],
    [{ clusterSize: 0xffffffff }, "QED cluster size is invalid"],
    [{ tableSize: 0 }, "QED table size is invalid"],
    [{ tableSize: 1 << 31 }, "QED table size is invalid"],
    [{ imageSize: 513 }, "QED image size is invalid"],
    [{ imageSize: 2 ** 53 }, "QED image size is invalid"],
    [{ l1TableOffset: 0x10001 }, "QED table offset is invalid"],
    [{ l1TableOffset: 0x80000 }, "QED table offset is invalid"],
    [{ l1TableOffset: 2 ** 60 }, "QED table offset is invalid"],
    [{ headerSize: 2 }, "QED table offset is invalid"],
    [
      { features: 1n, backingFilenameOffset: 0xfffffff0, backingFilenameSize: 0xffffffff },
      "QED backing filename offset is invalid",
    ],
    [
      { features: 1n, backingFilenameOffset: 64, backingFilenameSize: 65536 - 63 },
      "QED backing filename offset is invalid",
    ],
    [
      { features: 1n, backingFilenameOffset: 64, backingFilenameSize: 4096 },
      "Failed to read backing filename",
    ],
  ];
  for (const [over, message] of cases) await refuses(withHeader(good, over), message);
});

Deno.test("`QedImage.open()` accepts an empty backing name and unknown compat bits", async () => {
  const good = await sample();
  const image = await QedImage.open(
    new MemoryStorage(withHeader(good, { features: 1n, compatFeatures: 0x80n })),
  );
  assert.equal(image.backingFile, undefined);
  await image.close();
});

Deno.test("tables and clusters past EOF or unaligned fail the request with EINVAL, not the open", async () => {
  const good = await sample();
  for (
    const [at, value] of [
      [0x10000, 0x100000],
      [0x10000, 0x10800],
      [0x10000, 1],
      [0x60000, 0x90800],
      [0x60000, 2 ** 62],
    ]
  ) {
    const disk = new MemoryStorage(good.slice());
    await setU64(disk, at!, value!);
    const image = await QedImage.open(disk, { readOnly: true });
    await assert.rejects(image.read(0, new Uint8Array(4096)), {
      name: "QedIoError",
      code: "QED_INVALID_OFFSET",
    });
    await assert.rejects(image.blockStatus(0, 4096), { code: "QED_INVALID_OFFSET" });
    await image.close();
  }
  // A write through an invalid L1 entry fails and writes nothing.
  const disk = new RecordingStorage(new MemoryStorage(good.slice()));
  await setU64(disk.inner, 0x10000, 0x10800);
  const image = await QedImage.open(disk);
  disk.clear();
  await assert.rejects(image.write(4096, new Uint8Array(512)), { code: "QED_INVALID_OFFSET" });
  await assert.rejects(image.writeZeroes(0, 65536), { code: "QED_INVALID_OFFSET" });
  assert.deepEqual(disk.log.filter((l) => l.startsWith("write")), []);
});
