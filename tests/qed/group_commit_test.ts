import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import fc from "fast-check";
import { MemoryStorage, type Storage } from "../../io/mod.ts";
import { QedImage, RawImage } from "../../qed/mod.ts";
import { seeds } from "../_tools.ts";
import { pattern, RecordingStorage } from "./_helpers.ts";

const CS = 4096;

/** Takes a power-cut snapshot before every write, flush and close. */
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

async function createBacked(disk: Storage): Promise<void> {
  await QedImage.create(disk, {
    size: 64 * CS,
    clusterSize: CS,
    tableSize: 2,
    backingFile: "b",
    backingFormat: "raw",
  });
}

Deno.test("`QedImage.write()` allocating writes share one flush, at the next flush, before their L2 update", async () => {
  const base = await RawImage.open(new MemoryStorage(pattern(64 * CS, 3)), { readOnly: true });
  const disk = new RecordingStorage();
  await createBacked(disk);
  const image = await QedImage.open(disk, { backing: base });
  await image.write(0, pattern(CS, 1)); // allocates the L2 table
  disk.clear();
  await Promise.all([2, 3, 4, 5].map((c) => image.write(c * CS, pattern(CS, c))));
  assert.equal(disk.log.filter((e) => e === "flush").length, 0, disk.log.join("\n"));
  await image.flush();
  // Every data write precedes the first flush; the L2 sector is written after it, once.
  const flushAt = disk.log.indexOf("flush");
  assert.deepEqual(disk.log.slice(flushAt), ["flush", "write 512 @0x4000", "flush"]);
  for (const c of [2, 3, 4, 5]) {
    const buf = new Uint8Array(CS);
    await image.read(c * CS, buf);
    assert.deepEqual(buf, pattern(CS, c));
  }
  await image.close();
  const reopened = await QedImage.open(disk.inner.clone(), { backing: base, readOnly: true });
  assert.equal((await reopened.check()).corruptions, 0);
  const buf = new Uint8Array(CS);
  await reopened.read(5 * CS, buf);
  assert.deepEqual(buf, pattern(CS, 5));
});

Deno.test("`QedImage.write()` concurrent writes with a backing file: after any power cut no L2 entry points at lost data", async () => {
  const baseBytes = pattern(64 * CS, 9);
  const base = await RawImage.open(new MemoryStorage(baseBytes), { readOnly: true });
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(fc.nat(63), { minLength: 1, maxLength: 10 }),
        fc.infiniteStream(fc.boolean()),
        async (clusters, coin) => {
          const created = new MemoryStorage();
          await createBacked(created);
          const disk = new CutRecorder(created, () => coin.next().value as boolean);
          const image = await QedImage.open(disk, { backing: base });
          await Promise.all(clusters.map((c) => image.write(c * CS, pattern(CS, 100 + c))));
          await image.close();
          for (const cut of disk.cuts) {
            const after = await QedImage.open(cut, { backing: base, readOnly: true });
            assert.equal((await after.check()).corruptions, 0);
            const buf = new Uint8Array(CS);
            for (const c of clusters) {
              await after.read(c * CS, buf);
              const old = baseBytes.subarray(c * CS, (c + 1) * CS);
              const fresh = pattern(CS, 100 + c);
              assert.ok(
                buf.every((b, i) => b === fresh[i]) || buf.every((b, i) => b === old[i]),
                `cluster ${c} is neither old nor new after a cut`,
              );
            }
          }
          // Nothing is lost once closed.
          const final = await QedImage.open(disk.cuts.at(-1)!.clone(), { backing: base });
          await final.close();
        },
      ),
      { seed, numRuns: 25 },
    );
  }
});

Deno.test("`QedImage.write()` past maxPendingL2Bytes settles in the background: a flush, then the entries, while writes go on", async () => {
  const base = await RawImage.open(new MemoryStorage(pattern(64 * CS, 3)), { readOnly: true });
  const disk = new RecordingStorage();
  await createBacked(disk);
  const image = await QedImage.open(disk, { backing: base, maxPendingL2Bytes: 2 * CS });
  await image.write(0, pattern(CS, 1)); // allocates the L2 table
  disk.clear();
  // A slow disk: each flush waits until the test lets it finish, in any order.
  const waiting: (() => void)[] = [];
  const flush = disk.flush.bind(disk);
  disk.flush = async () => {
    const done = flush();
    await new Promise<void>((resolve) => waiting.push(resolve));
    return done;
  };
  const settle = async (i: number) => {
    while (waiting.length <= i) await new Promise((r) => setTimeout(r, 0));
    waiting[i]!();
  };
  await image.write(2 * CS, pattern(CS, 2));
  await image.write(3 * CS, pattern(CS, 3)); // the second pending cluster starts a settle
  await image.write(4 * CS, pattern(CS, 4)); // goes on while the settle's flush waits
  assert.deepEqual(disk.log, [
    "write 4096 @0x6000",
    "write 4096 @0x7000",
    "flush",
    "write 4096 @0x8000",
  ]);
  // flush() must not write its newer sector before the settle's older copy lands, even if
  // the disk finishes its own flush first.
  const flushed = image.flush();
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(waiting.length, 1, "flush() waits for the settle before flushing");
  await settle(0);
  await settle(1);
  await settle(2);
  await flushed;
  // The settle writes the sector as it was when it began (clusters 2 and 3), flush()
  // then adds cluster 4's entry after a flush of its own.
  assert.deepEqual(disk.log.slice(4), ["write 512 @0x4000", "flush", "write 512 @0x4000", "flush"]);
  disk.flush = flush;
  await image.close();
  const reopened = await QedImage.open(disk.inner.clone(), { backing: base, readOnly: true });
  assert.equal((await reopened.check()).corruptions, 0);
  for (const c of [2, 3, 4]) {
    const buf = new Uint8Array(CS);
    await reopened.read(c * CS, buf);
    assert.deepEqual(buf, pattern(CS, c));
  }
});

Deno.test("`QedImage.write()` background settles: after any power cut no entry points at lost data, and flushed writes stay", async () => {
  const baseBytes = pattern(64 * CS, 9);
  const base = await RawImage.open(new MemoryStorage(baseBytes), { readOnly: true });
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uniqueArray(fc.nat(63), { minLength: 1, maxLength: 5 }), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.integer({ min: 1, max: 4 }),
        fc.nat(3),
        fc.infiniteStream(fc.boolean()),
        async (batches, maxClusters, flushAfter, coin) => {
          const created = new MemoryStorage();
          await createBacked(created);
          const disk = new CutRecorder(created, () => coin.next().value as boolean);
          const image = await QedImage.open(disk, {
            backing: base,
            maxPendingL2Bytes: maxClusters * CS,
          });
          const latest = new Map<number, number>();
          let durable = new Map<number, number>();
          let durableFromCut = Infinity;
          for (const [b, batch] of batches.entries()) {
            await Promise.all(batch.map((c) => image.write(c * CS, pattern(CS, 10 * b + c))));
            for (const c of batch) latest.set(c, 10 * b + c);
            await turn(); // lets a background settle run between batches
            if (b === flushAfter) {
              await image.flush();
              durable = new Map(latest);
              durableFromCut = disk.cuts.length;
            }
          }
          await image.close();
          for (const [i, cut] of disk.cuts.entries()) {
            const after = await QedImage.open(cut, { backing: base, readOnly: true });
            assert.equal((await after.check()).corruptions, 0);
            const buf = new Uint8Array(CS);
            for (const c of latest.keys()) {
              await after.read(c * CS, buf);
              const old = baseBytes.subarray(c * CS, (c + 1) * CS);
              const written = batches.flatMap((batch, b) => batch.includes(c) ? [10 * b + c] : []);
              const ok = written.some((v) => buf.every((x, k) => x === pattern(CS, v)[k])) ||
                (buf.every((x, k) => x === old[k]) && !(i >= durableFromCut && durable.has(c)));
              assert.ok(
                ok,
                `cluster ${c} after cut ${i}: neither a written version nor allowed old data`,
              );
            }
          }
        },
      ),
      { seed, numRuns: 8 },
    );
  }
});
