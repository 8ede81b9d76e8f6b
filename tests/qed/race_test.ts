/**
 * Races explored with `fc.scheduler`: every storage request of the image
 * completes in an order fast-check chooses, while writes that share clusters
 * (but not bytes), zero writes and reads run concurrently.
 */

import fc from "fast-check";
import { MemoryStorage, type Storage } from "../../io/mod.ts";
import { QedImage, RawImage } from "../../qed/mod.ts";
import { seeds } from "../_tools.ts";
import { assertBytes, pattern } from "./_helpers.ts";

/** A store whose requests complete when the scheduler says so (once `scheduler` is set). */
class ScheduledStorage implements Storage {
  scheduler: fc.Scheduler | null = null;
  constructor(readonly inner: MemoryStorage) {}
  #gate<T>(label: string, run: () => Promise<T>): Promise<T> {
    return this.scheduler ? this.scheduler.schedule(Promise.resolve(label)).then(run) : run();
  }
  read(offset: number, buf: Uint8Array): Promise<number> {
    return this.#gate(`read ${offset}`, () => this.inner.read(offset, buf));
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    const copy = data.slice();
    return this.#gate(`write ${offset}`, () => this.inner.write(offset, copy));
  }
  flush(): Promise<void> {
    return this.#gate("flush", () => this.inner.flush());
  }
  size(): Promise<number> {
    return this.inner.size();
  }
  truncate(length: number): Promise<void> {
    return this.inner.truncate(length);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const CS = 4096;
const SPAN = 4 << 20; // 4 KiB clusters, table_size 2
const SLOT = 1500; // slots share clusters but never bytes

/** Slot `k`: 12 slots from 0, 12 just before the L2 boundary, 12 after it. */
function slotStart(k: number): number {
  return k < 12 ? k * SLOT : k < 24 ? SPAN - 12 * SLOT + (k - 12) * SLOT : SPAN + (k - 24) * SLOT;
}

Deno.test("`QedImage` allocating writes sharing clusters survive any completion order", async () => {
  const base = pattern(SPAN + CS * 8, 11);
  const backing = await RawImage.open(new MemoryStorage(base), { readOnly: true });
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.uniqueArray(fc.nat(35), { minLength: 2, maxLength: 10 }),
        fc.array(fc.constantFrom(0, 1, 2), { minLength: 10, maxLength: 10 }),
        fc.boolean(),
        async (s, slots, kinds, withBacking) => {
          const disk = new MemoryStorage();
          await QedImage.create(disk, {
            size: SPAN * 2,
            clusterSize: CS,
            tableSize: 2,
            ...(withBacking ? { backingFile: "b", backingFormat: "raw" } : {}),
          });
          const store = new ScheduledStorage(disk);
          const image = await QedImage.open(store, {
            backing: withBacking ? backing : null,
            l2CacheSize: 1,
          });
          // Allocate both L2 tables first so that lookups miss the one-table cache.
          await image.write(0, new Uint8Array(1));
          await image.write(SPAN, new Uint8Array(1));
          const model = new Uint8Array(SPAN * 2);
          if (withBacking) model.set(base);
          model[0] = 0;
          model[SPAN] = 0;
          store.scheduler = s;
          const pending: Promise<unknown>[] = [];
          const reads: [number, Uint8Array, Uint8Array][] = [];
          slots.forEach((slot, i) => {
            const at = slotStart(slot) + 1;
            const len = SLOT - 1;
            const kind = kinds[i]!;
            if (kind === 0) {
              const data = pattern(len, slot);
              model.set(data, at);
              pending.push(image.write(at, data));
            } else if (kind === 1) {
              model.fill(0, at, at + len);
              pending.push(image.writeZeroes(at, len));
            } else {
              const buf = new Uint8Array(len);
              reads.push([at, buf, model.slice(at, at + len)]);
              pending.push(image.read(at, buf));
            }
          });
          await s.waitFor(Promise.all(pending));
          store.scheduler = null;
          for (const [at, buf, want] of reads) assertBytes(buf, want, `read(${at})`);
          for (const start of [0, SPAN - 12 * SLOT, SPAN]) {
            const got = new Uint8Array(12 * SLOT);
            await image.read(start, got);
            assertBytes(got, model.subarray(start, start + 12 * SLOT), `region ${start}`);
          }
          const result = await image.check();
          if (result.corruptions !== 0 || result.leaks !== 0) {
            throw new Error(`check: ${JSON.stringify(result)}`);
          }
          await image.close();
        },
      ),
      { seed, numRuns: 60 },
    );
  }
});
