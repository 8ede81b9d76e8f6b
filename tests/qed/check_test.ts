import assert from "node:assert/strict";
import { MemoryStorage, StorageError } from "../../io/mod.ts";
import { decodeHeader, QED_F_NEED_CHECK, QedImage } from "../../qed/mod.ts";
import { RecordingStorage, setU64, u64At } from "./_helpers.ts";

const K = 1024;
const L1 = 0x10000;
const L2 = 0x60000;

/** A default image with clusters 0..n-1 written (data from 0x50000, L2 at 0x60000). */
async function imageWith(clusters: number[], size = 10 << 20): Promise<MemoryStorage> {
  const disk = new MemoryStorage();
  await QedImage.create(disk, { size });
  const image = await QedImage.open(disk);
  for (const c of clusters) await image.write(c * 64 * K, new Uint8Array(64 * K).fill(c + 1));
  await image.close();
  return disk.clone();
}

async function setNeedCheck(disk: MemoryStorage): Promise<void> {
  await setU64(disk, 16, Number(decodeHeader(disk.snapshot()).features | QED_F_NEED_CHECK));
}

Deno.test("`QedImage.check()` counts allocated and fragmented clusters of a clean image", async () => {
  const disk = await imageWith([0, 1, 5, 2]);
  const image = await QedImage.open(disk, { readOnly: true });
  const r = await image.check();
  assert.deepEqual(r, {
    totalClusters: 160,
    allocatedClusters: 4,
    fragmentedClusters: 3, // L2[0]=0x50000, L2[1]=0xa0000, L2[2]=0xc0000, L2[5]=0xb0000
    compressedClusters: 0,
    corruptions: 0,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: 0,
    leaksFixed: 0,
  });
  await image.close();
});

Deno.test("`QedImage.check()` reports an unaligned L2 entry; repair zeroes it and leaves a leak (§11.2)", async () => {
  const disk = await imageWith([0]);
  await setU64(disk, L2, 0x50800);
  const ro = await QedImage.open(disk.clone(), { readOnly: true });
  const before = await ro.check();
  assert.equal(before.corruptions, 1);
  assert.equal(before.allocatedClusters, 1, "invalid entries count as allocated");
  assert.equal(before.leaks, 1);
  await assert.rejects(ro.read(0, new Uint8Array(512)), {
    name: "QedIoError",
    code: "QED_INVALID_OFFSET",
  });
  await assert.rejects(ro.check({ repair: "all" }), { code: "QED_READ_ONLY" });

  const image = await QedImage.open(disk, { repairOnOpen: false });
  const fixed = await image.check({ repair: "all" });
  assert.equal(fixed.corruptions, 0);
  assert.equal(fixed.corruptionsFixed, 1);
  assert.equal(await u64At(disk, L2), 0);
  const again = await image.check();
  assert.equal(again.corruptions, 0);
  assert.equal(again.leaks, 1);
  assert.equal(again.allocatedClusters, 0);
  await image.close();
});

Deno.test("`QedImage.check()` repairs in qemu's -r leaks mode too, but never repairs leaks", async () => {
  const disk = await imageWith([0]);
  await setU64(disk, L2 + 8, 0xa0000); // past EOF
  await disk.write(0xb0000, new Uint8Array(64 * K)); // two unreferenced clusters: 0xa0000, 0xb0000
  const image = await QedImage.open(disk, { repairOnOpen: false });
  const r = await image.check({ repair: "leaks" });
  assert.equal(r.corruptionsFixed, 0, "0xa0000 is inside the file now: valid, so no fix");
  assert.equal(r.leaks, 1);
  assert.equal(r.leaksFixed, 0);
  assert.equal(await disk.size(), 0xc0000);
  await image.close();
});

Deno.test("`QedImage.check()` finds double references and overlapping tables, which stay", async () => {
  const disk = await imageWith([0, 1]);
  await setU64(disk, L2 + 8, 0x50000);
  await setU64(disk, L1 + 8, L2); // a second L1 entry sharing the L2 table
  const image = await QedImage.open(disk, { repairOnOpen: false });
  const r = await image.check({ repair: "all" });
  assert.equal(r.corruptions, 1 + 4, "one duplicate data cluster, four shared table clusters");
  assert.equal(r.leaks, 1, "0xa0000 is no longer referenced");
  await setNeedCheck(disk);
  await image.close();
  const again = await QedImage.open(disk.clone());
  assert.equal(again.needsCheck, true, "corruption remains: need-check stays set on close");
  await again.close();
});

Deno.test("`QedImage.check()` zeroes invalid L1 entries and rewrites the L1 table", async () => {
  const disk = await imageWith([0], 8 * 2 ** 30);
  await setU64(disk, L1 + 8, 1);
  await setU64(disk, L1 + 16, 0x61000);
  await setU64(disk, L1 + 24, 0x100000);
  const ro = await QedImage.open(disk.clone(), { readOnly: true });
  assert.equal((await ro.check()).corruptions, 3);
  await assert.rejects(ro.read(2 ** 31, new Uint8Array(1)), { code: "QED_INVALID_OFFSET" });
  const log = new RecordingStorage(disk);
  const image = await QedImage.open(log, { repairOnOpen: false });
  log.clear();
  const r = await image.check({ repair: "all" });
  assert.equal(r.corruptionsFixed, 3);
  assert.ok(log.log.includes("write 262144 @0x10000"));
  assert.equal(await u64At(disk, L1 + 8), 0);
  assert.equal(await u64At(disk, L1), L2);
  await image.close();
});

Deno.test("a read-write open of a need-check image repairs it; a read-only open does not (§11.3)", async () => {
  const disk = await imageWith([0, 1]);
  await setU64(disk, L2 + 8, 0x50800);
  await setNeedCheck(disk);
  const ro = await QedImage.open(disk.clone(), { readOnly: true });
  assert.equal(ro.needsCheck, true);
  assert.equal((await ro.check()).corruptions, 1);
  const image = await QedImage.open(disk);
  assert.equal(image.needsCheck, false);
  assert.equal(decodeHeader(disk.snapshot()).features, 0n);
  assert.equal(await u64At(disk, L2 + 8), 0);
  const buf = new Uint8Array(64 * K).fill(9);
  await image.read(64 * K, buf);
  assert.ok(buf.every((b) => b === 0));
  const r = await image.check();
  assert.equal(r.corruptions, 0);
  assert.equal(r.leaks, 1);
  await image.close();
});

Deno.test("an I/O error during the open-time check fails the open with 'Image corrupted'", async () => {
  const disk = await imageWith([0]);
  await setNeedCheck(disk);
  const failing = new RecordingStorage(disk);
  const read = failing.read.bind(failing);
  failing.read = (offset, buf) =>
    offset === L2 ? Promise.reject(new StorageError("STORAGE_EIO", "boom")) : read(offset, buf);
  await assert.rejects(QedImage.open(failing), {
    name: "QedFormatError",
    message: "Image corrupted",
  });
  const ro = await QedImage.open(failing, { readOnly: true });
  assert.equal((await ro.check()).checkErrors, 1);
});

Deno.test("lookups validate every entry of a run, not only the first (§6.4)", async () => {
  const disk = await imageWith([0]);
  await setU64(disk, L2 + 8, 0xa0000); // contiguous with L2[0] but at EOF
  const image = await QedImage.open(disk, { readOnly: true });
  const buf = new Uint8Array(64 * K);
  await image.read(0, buf); // the valid first cluster alone
  await assert.rejects(image.read(0, new Uint8Array(128 * K)), { code: "QED_INVALID_OFFSET" });
  assert.deepEqual(await image.blockStatus(0, 128 * K), {
    kind: "data",
    offset: 0,
    length: 64 * K,
    hostOffset: 0x50000,
  });
  await image.close();
});
