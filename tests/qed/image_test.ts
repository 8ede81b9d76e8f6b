import assert from "node:assert/strict";
import { type Clock, MemoryStorage } from "../../io/mod.ts";
import {
  decodeHeader,
  QED_F_NEED_CHECK,
  QedImage,
  QedIoError,
  QedOptionError,
  RawImage,
} from "../../qed/mod.ts";
import { seeds } from "../_tools.ts";
import {
  assertBytes,
  JitterStorage,
  newImage,
  pattern,
  RecordingStorage,
  setU64,
  u64At,
} from "./_helpers.ts";

const K = 1024;
const M = 1024 * 1024;

async function rawBacking(bytes: Uint8Array): Promise<RawImage> {
  return await RawImage.open(new MemoryStorage(bytes), { readOnly: true });
}

Deno.test("`QedImage.create()` writes what qemu-img create writes (§4)", async () => {
  const disk = new RecordingStorage();
  await QedImage.create(disk, { size: 10 * M });
  assert.deepEqual(disk.log, ["truncate 0", "write 64 @0x0", "write 262144 @0x10000", "flush"]);
  const bytes = disk.inner.snapshot();
  assert.equal(bytes.length, 327680);
  assert.deepEqual(decodeHeader(bytes).imageSize, 10 * M);
  assert.ok(bytes.subarray(64).every((b) => b === 0));

  const backed = new MemoryStorage();
  await QedImage.create(backed, { size: 1000, backingFile: "base.qcow2", backingFormat: "qcow2" });
  const h = decodeHeader(backed.snapshot());
  assert.equal(h.features, 1n);
  assert.equal(h.imageSize, 1024, "rounded up to 512");
  assert.equal(h.backingFilenameSize, 10);
  assert.equal(new TextDecoder().decode(backed.snapshot().subarray(64, 74)), "base.qcow2");

  const small = new MemoryStorage();
  await QedImage.create(small, { size: 0, clusterSize: 4096, tableSize: 16 });
  assert.equal(await small.size(), 17 * 4096);
});

Deno.test("`QedImage.create()` refuses what qemu-img refuses, with its text", async () => {
  const disk = new MemoryStorage();
  const cases: [Parameters<typeof QedImage.create>[1], string][] = [
    [
      { size: M, clusterSize: 1000 },
      "QED cluster size must be within range [4096, 67108864] and power of 2",
    ],
    [{ size: M, tableSize: 3 }, "QED table size must be within range [1, 16] and power of 2"],
    [
      { size: 65 * 2 ** 40 },
      "QED image size must be a non-zero multiple of cluster size and less than 70368744177664 bytes",
    ],
    [
      { size: M, clusterSize: 64 * M, tableSize: 16 },
      "QED image size must be a non-zero multiple of cluster size and less than 0 bytes",
    ],
  ];
  for (const [options, message] of cases) {
    await assert.rejects(QedImage.create(disk, options), { name: "QedOptionError", message });
  }
  await assert.rejects(QedImage.create(disk, { size: M, tableSize: 1 }), (e) => {
    assert.ok(e instanceof QedOptionError);
    assert.match(e.message, /qemu 7\.2 cannot open/);
    return true;
  });
  await assert.rejects(
    QedImage.create(disk, { size: M, clusterSize: 4096, backingFile: "x".repeat(4033) }),
    {
      code: "QED_BACKING_NAME_TOO_LONG",
    },
  );
  // 64 TiB is accepted (the comparison is <=), and so is size 0.
  await QedImage.create(disk, { size: 64 * 2 ** 40 });
  await QedImage.create(disk, { size: 0 });
});

Deno.test("`QedImage.open()` exposes the header, geometry and backing name", async () => {
  const disk = new MemoryStorage();
  await QedImage.create(disk, {
    size: 4 * M,
    backingFile: "base.raw",
    backingFormat: "raw",
    clusterSize: 4096,
    tableSize: 2,
  });
  const image = await QedImage.open(disk, { readOnly: true });
  assert.equal(image.size, 4 * M);
  assert.equal(image.clusterSize, 4096);
  assert.equal(image.tableSize, 2);
  assert.equal(image.backingFile, "base.raw");
  assert.equal(image.backingFormat, "raw");
  assert.equal(image.header.l1TableOffset, 4096);
  assert.equal(image.backing, null);
  assert.equal(image.readOnly, true);
  await assert.rejects(image.write(0, new Uint8Array(1)), {
    name: "QedIoError",
    code: "QED_READ_ONLY",
  });
  await image.close();
  await assert.rejects(image.read(0, new Uint8Array(1)), { code: "QED_CLOSED" });
});

Deno.test("`QedImage.read()` and `write()` round-trip across clusters and L2 tables", async () => {
  const { disk, image } = await newImage({ size: 12 * M + 512, clusterSize: 4096, tableSize: 2 });
  const data = pattern(3 * M, 1);
  await image.write(3 * M + 100, data); // crosses the 4 MiB L2 boundary
  await image.write(12 * M - 700, pattern(1212, 2)); // ends at the image end, mid-cluster
  const back = new Uint8Array(3 * M);
  await image.read(3 * M + 100, back);
  assertBytes(back, data);
  const tail = new Uint8Array(1212);
  await image.read(12 * M - 700, tail);
  assert.deepEqual(tail, pattern(1212, 2));
  const head = new Uint8Array(200);
  await image.read(3 * M, head);
  assert.ok(head.subarray(0, 100).every((b) => b === 0));
  await assert.rejects(image.read(12 * M, new Uint8Array(1024)), { code: "QED_OUT_OF_RANGE" });
  await image.close();
  const again = await QedImage.open(disk.clone());
  await again.read(3 * M + 100, back);
  assertBytes(back, data);
  assert.deepEqual((await again.check()).corruptions, 0);
  assert.deepEqual((await again.check()).leaks, 0);
});

Deno.test("`QedImage.write()` over a data cluster writes in place", async () => {
  const { image } = await newImage({ size: M });
  await image.write(0, new Uint8Array(65536).fill(1));
  const size = image.fileSize;
  const disk = image.storage as MemoryStorage;
  const before = disk.stats.writes;
  await image.write(100, new Uint8Array(10).fill(2));
  assert.equal(disk.stats.writes, before + 1);
  assert.equal(image.fileSize, size);
  await image.close();
});

Deno.test("`QedImage.read()` reads backing data, zeros past the backing end (§7)", async () => {
  const base = pattern(100000, 3);
  const { image } = await newImage({ size: 8 * M, backingFile: "b", backingFormat: "raw" }, {
    backing: await rawBacking(base),
  });
  const buf = new Uint8Array(20).fill(0xff);
  await image.read(99990, buf);
  assert.deepEqual(buf.subarray(0, 10), base.subarray(99990));
  assert.ok(buf.subarray(10).every((b) => b === 0));
  const far = new Uint8Array(4096).fill(0xff);
  await image.read(4 * M, far);
  assert.ok(far.every((b) => b === 0));
  // A partial write copies the head and tail of the cluster from the backing file (§8.4).
  await image.write(70000, new Uint8Array(1000).fill(0xab));
  const cluster = new Uint8Array(65536);
  await image.read(65536, cluster);
  const expected = new Uint8Array(65536);
  expected.set(base.subarray(65536, 100000));
  expected.fill(0xab, 70000 - 65536, 71000 - 65536);
  assert.deepEqual(cluster, expected);
  await image.close();
});

Deno.test("`QedImage.write()` into a zero cluster fills with zeros, not backing data (spec, §14.2)", async () => {
  const base = new Uint8Array(M).fill(0x11);
  const { image } = await newImage({ size: M, backingFile: "b", backingFormat: "raw" }, {
    backing: await rawBacking(base),
  });
  await image.writeZeroes(0, 128 * K);
  await image.write(4 * K, new Uint8Array(4 * K).fill(0xab));
  const cluster = new Uint8Array(64 * K);
  await image.read(0, cluster);
  const expected = new Uint8Array(64 * K);
  expected.fill(0xab, 4 * K, 8 * K);
  assert.deepEqual(cluster, expected);
  const next = new Uint8Array(64 * K);
  await image.read(64 * K, next);
  assert.ok(next.every((b) => b === 0));
  await image.close();
});

Deno.test("`QedImage.writeZeroes()` makes zero clusters where aligned, zeros elsewhere (§9)", async () => {
  const { disk, image } = await newImage({ size: M });
  await image.writeZeroes(32 * K, 128 * K);
  // Without a backing file the last L2 update waits for the flush.
  await image.flush();
  const l2 = 0x60000;
  assert.equal(await u64At(disk, l2), 0x50000);
  assert.equal(await u64At(disk, l2 + 8), 1);
  assert.equal(await u64At(disk, l2 + 16), 0xa0000);
  assert.deepEqual(await image.map(0, 256 * K), [
    { kind: "data", offset: 0, length: 64 * K, hostOffset: 0x50000 },
    { kind: "zero", offset: 64 * K, length: 64 * K },
    { kind: "data", offset: 128 * K, length: 64 * K, hostOffset: 0xa0000 },
    { kind: "unallocated", offset: 192 * K, length: 64 * K },
  ]);
  // Over a data cluster: zeros in place, the entry stays (§8.1).
  await image.write(0, new Uint8Array(64 * K).fill(5));
  await image.writeZeroes(0, 64 * K);
  assert.equal(await u64At(disk, l2), 0x50000);
  const buf = new Uint8Array(64 * K).fill(1);
  await image.read(0, buf);
  assert.ok(buf.every((b) => b === 0));
  // Over a fresh L2 range without backing: a new table with entries 1.
  const big = await newImage({ size: 4 * M, clusterSize: 4096, tableSize: 2 });
  await big.image.writeZeroes(0, 8192);
  assert.deepEqual(await big.image.map(0, 16384), [
    { kind: "zero", offset: 0, length: 8192 },
    { kind: "unallocated", offset: 8192, length: 8192 },
  ]);
  assert.equal(big.image.needsCheck, true);
  await image.close();
  await big.image.close();
});

Deno.test("`QedImage.writeZeroes()` with a backing file copies the head from the backing file (§9)", async () => {
  const base = new Uint8Array(M).fill(0x22);
  const { image } = await newImage({ size: M, backingFile: "b", backingFormat: "raw" }, {
    backing: await rawBacking(base),
  });
  await image.writeZeroes(32 * K, 128 * K);
  const buf = new Uint8Array(192 * K);
  await image.read(0, buf);
  assert.ok(buf.subarray(0, 32 * K).every((b) => b === 0x22));
  assert.ok(buf.subarray(32 * K, 160 * K).every((b) => b === 0));
  assert.ok(buf.subarray(160 * K).every((b) => b === 0x22));
  const status = await image.blockStatus(64 * K, 512 * K);
  assert.deepEqual(status, { kind: "zero", offset: 64 * K, length: 64 * K });
  assert.deepEqual(await image.blockStatus(192 * K, 512 * K), {
    kind: "unallocated",
    offset: 192 * K,
    length: 512 * K,
  });
  await image.close();
});

Deno.test("`QedImage.blockStatus()` stops at L2 boundaries and the image end", async () => {
  const { image } = await newImage({ size: 5 * M, clusterSize: 4096, tableSize: 2 });
  assert.deepEqual(await image.blockStatus(M, 10 * M), {
    kind: "unallocated",
    offset: M,
    length: 3 * M,
  });
  assert.deepEqual(await image.blockStatus(4 * M, 10 * M), {
    kind: "unallocated",
    offset: 4 * M,
    length: M,
  });
  assert.deepEqual(await image.blockStatus(5 * M, 10), {
    kind: "unallocated",
    offset: 5 * M,
    length: 0,
  });
  assert.deepEqual(await image.map(), [{ kind: "unallocated", offset: 0, length: 5 * M }]);
  await image.close();
});

Deno.test("need-check is set by the first allocation without a backing file and cleared by flush()", async () => {
  const { disk, image } = await newImage({ size: M });
  assert.equal(image.needsCheck, false);
  await image.write(0, new Uint8Array(512));
  assert.equal(image.needsCheck, true);
  assert.equal(decodeHeader(disk.snapshot()).features & QED_F_NEED_CHECK, QED_F_NEED_CHECK);
  // A power cut now leaves the bit set: the next read-write open repairs.
  const cut = disk.powerCut({ keep: () => true });
  await image.flush();
  assert.equal(image.needsCheck, false);
  assert.equal(decodeHeader(disk.snapshot()).features, 0n);
  const reopened = await QedImage.open(cut);
  assert.equal(reopened.needsCheck, false, "the open-time check cleared it");
  await image.close();
});

Deno.test("`QedImage.open()` clears unknown autoclear bits read-write only", async () => {
  const disk = new MemoryStorage();
  await QedImage.create(disk, { size: M });
  await setU64(disk, 32, 0x30);
  await setU64(disk, 24, 0x40); // unknown compat bits are left alone
  const ro = await QedImage.open(disk.clone(), { readOnly: true });
  assert.equal(ro.header.autoclearFeatures, 0x30n);
  const rw = await QedImage.open(disk);
  assert.equal(rw.header.autoclearFeatures, 0n);
  assert.equal(await u64At(disk, 32), 0);
  assert.equal(await u64At(disk, 24), 0x40);
  await assert.rejects(rw.changeBackingFile("x", "raw"), { code: "QED_UNSUPPORTED" });
  await rw.changeBackingFile(null);
  await rw.close();
});

Deno.test("`QedImage.changeBackingFile()` rewrites 64 + length bytes and leaves stale bytes (§12)", async () => {
  const disk = new RecordingStorage();
  await QedImage.create(disk, { size: 4 * M, backingFile: "base.qcow2", backingFormat: "qcow2" });
  const image = await QedImage.open(disk);
  disk.clear();
  await image.changeBackingFile("x.raw", "raw");
  // The leading flush (not qemu's) makes every L2 entry durable before the header changes.
  assert.deepEqual(disk.log, ["flush", "write 69 @0x0", "flush"]);
  let bytes = disk.inner.snapshot();
  assert.equal(new TextDecoder().decode(bytes.subarray(64, 74)), "x.rawqcow2");
  assert.equal(decodeHeader(bytes).features, 5n);
  assert.equal(decodeHeader(bytes).backingFilenameSize, 5);
  assert.equal(image.backingFile, "x.raw");
  assert.equal(image.backingFormat, "raw");
  await image.changeBackingFile(null);
  bytes = disk.inner.snapshot();
  const h = decodeHeader(bytes);
  assert.equal(h.features, 0n);
  assert.equal(h.backingFilenameOffset, 64);
  assert.equal(h.backingFilenameSize, 0);
  assert.equal(image.backingFile, undefined);
  await assert.rejects(image.changeBackingFile("y".repeat(65536 - 63)), (e) => {
    assert.ok(e instanceof QedIoError);
    assert.equal(e.code, "QED_NO_SPACE");
    return true;
  });
  await image.close();
});

Deno.test("`QedImage.changeBackingFile()` moves a name stored elsewhere to offset 64", async () => {
  const disk = new MemoryStorage();
  await QedImage.create(disk, { size: M, clusterSize: 65536 });
  // Rebuild as header_size 2 with the name at 70000 and L1 at 0x20000.
  const bytes = new Uint8Array(0x60000);
  const h = decodeHeader(disk.snapshot());
  const { encodeHeader } = await import("../../qed/mod.ts");
  bytes.set(encodeHeader({
    ...h,
    headerSize: 2,
    l1TableOffset: 0x20000,
    features: 1n,
    backingFilenameOffset: 70000,
    backingFilenameSize: 8,
  }));
  bytes.set(new TextEncoder().encode("base.raw"), 70000);
  const moved = new MemoryStorage(bytes);
  const image = await QedImage.open(moved);
  assert.equal(image.backingFile, "base.raw");
  await image.changeBackingFile("new.qed");
  const after = decodeHeader(moved.snapshot());
  assert.equal(after.backingFilenameOffset, 64);
  assert.equal(after.features, 1n);
  await image.close();
});

Deno.test("`QedImage` allocates at the file length rounded down to a cluster (§15)", async () => {
  const disk = new MemoryStorage();
  await QedImage.create(disk, { size: M });
  await disk.write(327680, new Uint8Array(8).fill(9));
  const image = await QedImage.open(disk);
  await image.write(0, new Uint8Array(64 * K).fill(1));
  assert.deepEqual((await image.blockStatus(0, 1)).hostOffset, 0x50000);
  await image.close();
});

Deno.test("`QedImage` keeps data right under many interleaved concurrent requests", async () => {
  for (const seed of seeds()) {
    const base = pattern(M + 5000, 7);
    const disk = new MemoryStorage();
    await QedImage.create(disk, {
      size: 5 * M,
      clusterSize: 4096,
      tableSize: 2,
      backingFile: "b",
      backingFormat: "raw",
    });
    const image = await QedImage.open(new JitterStorage(disk, seed), {
      backing: await rawBacking(base),
      l2CacheSize: 1,
    });
    const model = new Uint8Array(5 * M);
    model.set(base);
    const slot = 10007; // not cluster aligned: neighbouring slots share clusters
    const slots = 100; // 50 from 0, 50 across the L2 boundary at 4 MiB (past the backing end)
    const slotStart = (s: number) => s < 50 ? s * slot : 4 * M - 25 * slot + (s - 50) * slot;
    let rng = seed >>> 0 || 1;
    const next = (n: number) => {
      rng = (Math.imul(rng, 1103515245) + 12345) >>> 0;
      return rng % n;
    };
    for (let round = 0; round < 4; round++) {
      const ops: Promise<void>[] = [];
      const checks: (() => void)[] = [];
      for (let s = 0; s < slots; s++) {
        const offset = slotStart(s) + next(100);
        const len = 1 + next(slot - 200);
        const what = next(4);
        if (what === 0) {
          const data = pattern(len, seed + s + round);
          model.set(data, offset);
          ops.push(image.write(offset, data));
        } else if (what === 1) {
          model.fill(0, offset, offset + len);
          ops.push(image.writeZeroes(offset, len));
        } else {
          const buf = new Uint8Array(len);
          const want = model.slice(offset, offset + len);
          ops.push(image.read(offset, buf));
          checks.push(() => assertBytes(buf, want, `read at ${offset}`));
        }
      }
      await Promise.all(ops);
      for (const check of checks) check();
    }
    const back = new Uint8Array(5 * M);
    await image.read(0, back);
    assertBytes(back, model, "whole image");
    const result = await image.check();
    assert.equal(result.corruptions, 0);
    assert.equal(result.leaks, 0);
    await image.close();
  }
});

/** A clock whose sleepers wake only when the test says so. */
class ManualClock implements Clock {
  #now = 0;
  #sleepers: { at: number; resolve: () => void }[] = [];
  now = () => this.#now;
  wallTime = () => this.#now;
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const sleeper = { at: this.#now + ms, resolve };
      this.#sleepers.push(sleeper);
      signal?.addEventListener("abort", () => {
        this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
        reject(signal.reason);
      });
    });
  }
  get pending(): number {
    return this.#sleepers.length;
  }
  async advance(ms: number): Promise<void> {
    this.#now += ms;
    const due = this.#sleepers.filter((s) => s.at <= this.#now);
    this.#sleepers = this.#sleepers.filter((s) => s.at > this.#now);
    for (const s of due) s.resolve();
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 0));
  }
}

Deno.test("need-check is cleared 5 s after the last allocating write when a clock is given", async () => {
  const clock = new ManualClock();
  const { disk, image } = await newImage({ size: M }, { clock });
  await image.write(0, new Uint8Array(512));
  assert.equal(image.needsCheck, true);
  assert.equal(clock.pending, 1);
  await clock.advance(4000);
  await image.write(65536, new Uint8Array(512)); // re-arms the timer
  await clock.advance(4000);
  assert.equal(image.needsCheck, true);
  await clock.advance(1000);
  assert.equal(image.needsCheck, false);
  assert.equal(decodeHeader(disk.snapshot()).features, 0n);
  await image.write(131072, new Uint8Array(512));
  await image.close();
  assert.equal(clock.pending, 0, "close cancels the timer");
});
