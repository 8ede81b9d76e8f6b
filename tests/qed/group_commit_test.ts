import assert from "node:assert/strict";
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
