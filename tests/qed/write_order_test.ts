import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryStorage, type Storage } from "../../io/mod.ts";
import { QedImage, RawImage } from "../../qed/mod.ts";
import { seeds } from "../_tools.ts";
import { pattern, RecordingStorage } from "./_helpers.ts";

const K = 1024;

Deno.test("`QedImage.write()` allocates data before L2 before L1, without a backing file (§8.3)", async () => {
  const disk = new RecordingStorage();
  await QedImage.create(disk, { size: 10 << 20 });
  const image = await QedImage.open(disk);
  disk.clear();
  await image.write(4 * K, new Uint8Array(4 * K).fill(1));
  assert.deepEqual(disk.log, [
    "read 512 @0x0", // need-check: 512-byte read-modify-write of the header
    "write 512 @0x0",
    "write 4096 @0x50000", // prefill (zeros)
    "write 57344 @0x52000", // postfill (zeros)
    "write 4096 @0x51000", // data
    "write 262144 @0x60000", // new L2 table, whole
    "flush",
    "write 512 @0x10000", // the L1 sector
  ]);
  assert.equal(image.needsCheck, true);
  disk.clear();
  await image.write(72 * K, new Uint8Array(4 * K).fill(2));
  assert.deepEqual(disk.log, [
    "write 8192 @0xa0000",
    "write 53248 @0xa3000",
    "write 4096 @0xa2000",
    "write 512 @0x60000", // the L2 sector; no flush, no header write
  ]);
  disk.clear();
  await image.close();
  assert.deepEqual(disk.log, ["flush", "read 512 @0x0", "write 512 @0x0", "flush"]);
  const reopened = await QedImage.open(disk.inner.clone());
  assert.equal(reopened.needsCheck, false);
});

Deno.test("`QedImage.write()` flushes copied backing data before any L2 update (§8.3)", async () => {
  const log: string[] = [];
  const base = new RecordingStorage(new MemoryStorage(pattern(4 << 20, 5)), log, "base");
  const disk = new RecordingStorage(new MemoryStorage(), log);
  await QedImage.create(disk, { size: 4 << 20, backingFile: "base.raw", backingFormat: "raw" });
  const image = await QedImage.open(disk, {
    backing: await RawImage.open(base, { readOnly: true }),
  });
  log.length = 0;
  await image.write(4 * K, new Uint8Array(4 * K).fill(1));
  assert.deepEqual(log, [
    "base read 4096 @0x0",
    "write 4096 @0x50000",
    "base read 57344 @0x2000",
    "write 57344 @0x52000",
    "write 4096 @0x51000",
    "flush",
    "write 262144 @0x60000",
    "flush",
    "write 512 @0x10000",
  ]);
  log.length = 0;
  await image.write(72 * K, new Uint8Array(4 * K).fill(2));
  assert.deepEqual(log, [
    "base read 8192 @0x10000",
    "write 8192 @0xa0000",
    "base read 53248 @0x13000",
    "write 53248 @0xa3000",
    "write 4096 @0xa2000",
    "flush",
    "write 512 @0x60000",
  ]);
  assert.equal(image.needsCheck, false, "need-check is never set with a backing file");
  log.length = 0;
  await image.close();
  assert.deepEqual(log, ["flush"]);
});

Deno.test("`QedImage.write()` lays out one L2 per table crossed, data first (§8.3)", async () => {
  const disk = new MemoryStorage();
  await QedImage.create(disk, { size: 16 << 20, clusterSize: 4096, tableSize: 2 });
  const image = await QedImage.open(disk);
  // 4 KiB clusters, table_size 2: each L2 table maps 4 MiB.
  await image.write((4 << 20) - 4096, new Uint8Array(8192).fill(3));
  const map = await image.map((4 << 20) - 4096, 8192);
  assert.deepEqual(map.map((e) => e.hostOffset), [0x3000, 0x6000]);
  assert.equal(image.fileSize, 0x9000);
  await image.close();
});

/** A store that, before each write or flush, records what a power cut would leave. */
class CutRecorder implements Storage {
  cuts: MemoryStorage[] = [];
  constructor(readonly inner: MemoryStorage, readonly keep: () => boolean) {}
  #cut(): void {
    this.cuts.push(this.inner.powerCut({ keep: () => this.keep() }));
  }
  read(offset: number, buf: Uint8Array): Promise<number> {
    return this.inner.read(offset, buf);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    this.#cut();
    return this.inner.write(offset, data);
  }
  flush(): Promise<void> {
    this.#cut();
    return this.inner.flush();
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  truncate(length: number): Promise<void> {
    return this.inner.truncate(length);
  }
  close(): Promise<void> {
    this.#cut();
    return this.inner.close();
  }
}

Deno.test("`QedImage.write()` with a backing file: after any power cut no L2 entry points at lost data", async () => {
  const cs = 4096;
  const baseBytes = pattern(64 * cs, 9);
  const base = await RawImage.open(new MemoryStorage(baseBytes), { readOnly: true });
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            cluster: fc.nat(63),
            at: fc.nat(cs - 1),
            len: fc.integer({ min: 1, max: 600 }),
          }),
          {
            minLength: 1,
            maxLength: 8,
          },
        ),
        fc.infiniteStream(fc.boolean()),
        async (writes, coin) => {
          const created = new MemoryStorage();
          await QedImage.create(created, {
            size: 64 * cs,
            clusterSize: cs,
            tableSize: 2,
            backingFile: "b",
            backingFormat: "raw",
          });
          const disk = new CutRecorder(created, () => coin.next().value as boolean);
          const image = await QedImage.open(disk, { backing: base });
          // Each cluster is written at most once, so after a cut it holds
          // either the backing bytes or the whole new cluster.
          const expected = new Map<number, Uint8Array>();
          for (const w of writes) {
            if (expected.has(w.cluster)) continue;
            const len = Math.min(w.len, cs - w.at);
            const data = pattern(len, w.cluster);
            const whole = baseBytes.slice(w.cluster * cs, (w.cluster + 1) * cs);
            whole.set(data, w.at);
            expected.set(w.cluster, whole);
            await image.write(w.cluster * cs + w.at, data);
          }
          await image.close();
          for (const cut of disk.cuts) {
            const after = await QedImage.open(cut, { backing: base, readOnly: true });
            const result = await after.check();
            assert.equal(result.corruptions, 0);
            const buf = new Uint8Array(cs);
            for (const [cluster, whole] of expected) {
              await after.read(cluster * cs, buf);
              const old = baseBytes.subarray(cluster * cs, (cluster + 1) * cs);
              assert.ok(
                buf.every((b, i) => b === whole[i]) || buf.every((b, i) => b === old[i]),
                `cluster ${cluster} is neither old nor new after a cut`,
              );
            }
          }
        },
      ),
      { seed, numRuns: 25 },
    );
  }
});
