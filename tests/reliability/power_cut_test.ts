/**
 * Power-cut campaign (issue 8, part 1).
 *
 * A seeded guest writes, zeroes, reads (copy-on-read) and flushes a QED
 * image on {@linkcode MemoryStorage} while a rate-limited stream job copies
 * the template in, all on a {@linkcode VirtualClock}. At random storage
 * writes the power is cut several ways (every unflushed write dropped, all
 * kept, an in-order prefix with the last write torn at a sector boundary, a
 * reordered subset with torn writes). Each surviving disk is reopened
 * read-write (the need-check repair runs) and must: open; check with no
 * corruption (leaks allowed); read, sector by sector, the content of the
 * guest's last completed flush or a newer version the guest wrote since,
 * never anything else; and, when it still has its backing file, complete a
 * new stream whose result equals what the disk read before.
 *
 * Torn writes keep a whole number of 512-byte sectors: a disk's sector write
 * is atomic, and QED's crash safety (like qemu's) relies on that.
 *
 * @module
 */

import assert from "node:assert/strict";
import { MemoryStorage } from "../../io/memory_storage.ts";
import type { PendingWrite } from "../../io/memory_storage.ts";
import type { Storage } from "../../io/storage.ts";
import { QedImage } from "../../qed/image.ts";
import { BlockDevice } from "../../block/device.ts";
import type { BlockNode } from "../../block/node.ts";
import { qedNode } from "../../block/qed_node.ts";
import { sourceNode } from "../../block/source_node.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import type { JobEvent } from "../../block/job.ts";
import { startStream, type StreamJob } from "../../block/stream_job.ts";
import { Random } from "../../sim/random.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";
import { seeds } from "../_tools.ts";
import { count, report } from "./_campaign.ts";

const SECTOR = 512;
const CLUSTER = 4096;
const KiB = 1024;
/** Two L2 tables' worth (4 MiB each with 4 KiB clusters, table size 2), the second partly. */
const SIZE = 4608 * KiB;
const SECTORS = SIZE / SECTOR;
/** Guest writes land here 75% of the time, so clusters are rewritten and L2 sectors shared. */
const HOT = 512 * KiB;
/** The template is shorter than the image: past its end the overlay reads zeros (qemu's EOF rule). */
const TEMPLATE_SIZE = 768 * KiB;

/** Version of a sector: 0 the original (template or zeros), -1 zeros, n > 0 the guest's n-th write. */
type Version = number;

/** Writes the content of `version` of sector `s` into `out` (512 bytes). */
function sectorContent(version: Version, s: number, template: Uint8Array | null, out: Uint8Array) {
  if (version === -1 || (version === 0 && (!template || s * SECTOR >= template.length))) {
    out.fill(0);
  } else if (version === 0) out.set(template!.subarray(s * SECTOR, (s + 1) * SECTOR));
  else {
    for (let i = 0; i < SECTOR; i++) out[i] = (version * 13 + s + i * 7) & 0xff;
    new DataView(out.buffer, out.byteOffset).setUint32(0, version, true);
    new DataView(out.buffer, out.byteOffset).setUint32(4, s, true);
  }
}

/** The guest's view: the version each sector had at its last completed flush, and those written since. */
class Model {
  stable = new Int32Array(SECTORS);
  current = new Int32Array(SECTORS);
  since = new Map<number, Version[]>();

  wrote(s: number, v: Version): void {
    this.current[s] = v;
    let list = this.since.get(s);
    if (!list) this.since.set(s, list = []);
    list.push(v);
  }

  flushed(): void {
    this.stable = this.current.slice();
    this.since.clear();
  }

  snapshot(): { stable: Int32Array; since: Map<number, Version[]> } {
    return {
      stable: this.stable.slice(),
      since: new Map([...this.since].map(([k, v]) => [k, [...v]])),
    };
  }
}

/** One surviving disk and the guest's view at the cut. */
interface Cut {
  storage: MemoryStorage;
  stable: Int32Array;
  since: Map<number, Version[]>;
  mode: string;
  write: number;
}

type KeepMode = "drop" | "all" | "ordered" | "reordered";
const MODES: KeepMode[] = ["drop", "all", "ordered", "reordered"];

/** A sector-aligned prefix length shorter than the write (0 = dropped whole). */
function tear(w: PendingWrite, rng: Random): number {
  const sectors = Math.ceil(w.data.length / SECTOR);
  return sectors <= 1 ? 0 : rng.int(1, sectors) * SECTOR;
}

function keeper(mode: KeepMode, pending: number, rng: Random) {
  const prefix = rng.int(0, pending + 1);
  const tornLast = rng.chance(0.5);
  return (w: PendingWrite, i: number): boolean | number => {
    switch (mode) {
      case "drop":
        return false;
      case "all":
        return true;
      case "ordered":
        return i < prefix ? true : i === prefix && tornLast ? tear(w, rng) : false;
      case "reordered": {
        const r = rng.next();
        return r < 0.5 ? true : r < 0.65 ? tear(w, rng) : false;
      }
    }
  };
}

/** A storage that cuts the power (several ways) after chosen writes. */
class CuttingStorage implements Storage {
  writes = 0;
  cuts: Cut[] = [];
  constructor(
    readonly inner: MemoryStorage,
    readonly model: Model,
    readonly rng: Random,
    readonly cutChance: number,
  ) {}
  read(o: number, b: Uint8Array) {
    return this.inner.read(o, b);
  }
  async write(o: number, d: Uint8Array) {
    await this.inner.write(o, d);
    this.writes++;
    // Header writes (need-check set, backing link removed) are always cut at:
    // they are rare and where ordering mistakes would show.
    if (o === 0 || this.rng.chance(this.cutChance)) {
      const pending = this.inner.pendingWrites.length;
      const snap = this.model.snapshot();
      for (const mode of MODES) {
        const storage = this.inner.powerCut({ keep: keeper(mode, pending, this.rng) });
        this.cuts.push({ storage, ...snap, mode, write: this.writes });
      }
    }
  }
  flush() {
    return this.inner.flush();
  }
  size() {
    return this.inner.size();
  }
  truncate(n: number) {
    return this.inner.truncate(n);
  }
  close() {
    return this.inner.close();
  }
}

function templateBytes(rng: Random): Uint8Array {
  const bytes = new Uint8Array(TEMPLATE_SIZE);
  for (let pos = 0; pos < TEMPLATE_SIZE;) {
    const len = rng.int(1, 24) * CLUSTER;
    if (rng.chance(0.7)) {
      const base = rng.uint32();
      for (let i = pos; i < Math.min(TEMPLATE_SIZE, pos + len); i++) {
        bytes[i] = (base + i * 31) & 0xff || 1;
      }
    }
    pos += len;
  }
  return bytes;
}

function templateOf(bytes: Uint8Array): BlockNode {
  return sourceNode({
    size: bytes.length,
    read(offset, buf) {
      buf.set(bytes.subarray(offset, offset + buf.length));
      return Promise.resolve();
    },
  }, { nodeName: "base", driver: "raw", filename: "base.raw" });
}

/** Runs one seeded workload and returns the surviving disks it cut. */
async function workload(seed: number, withBacking: boolean, cutChance: number) {
  const rng = new Random(seed);
  const template = withBacking ? templateBytes(rng.fork("template")) : null;
  const mem = new MemoryStorage();
  await QedImage.create(mem, {
    size: SIZE,
    clusterSize: CLUSTER,
    tableSize: 2,
    ...(template ? { backingFile: "base.raw", backingFormat: "raw" } : {}),
  });
  await mem.flush();
  const model = new Model();
  const storage = new CuttingStorage(mem, model, rng.fork("cuts"), cutChance);
  const base = template ? templateOf(template) : null;
  // Half the runs settle deferred L2 entries in the background after a few clusters.
  const settle = rng.fork("settle");
  const image = await QedImage.open(
    storage,
    settle.chance(0.5) ? { maxPendingL2Bytes: CLUSTER * settle.int(1, 8) } : {},
  );
  const top = qedNode(image, { nodeName: "ov", filename: "ov.qed", backing: base });
  const device = new BlockDevice(top, { copyOnRead: withBacking && rng.chance(0.7) });
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const ops = rng.int(30, 80);
  const streamAt = withBacking && rng.chance(0.85) ? rng.int(0, ops) : -1;
  const cancelAt = rng.chance(0.2) ? rng.int(0, ops) : -1;
  let version = 0;
  let job: StreamJob | undefined;
  const scratch = new Uint8Array(SECTOR);
  await clock.run(async () => {
    for (let op = 0; op < ops; op++) {
      if (op === streamAt) {
        job = startStream(jobs, device, {
          jobId: "s",
          speed: rng.int(5, 40) * 1024 * 1024,
          chunkSize: 64 * KiB,
          parallel: rng.int(1, 4),
        });
      }
      if (op === cancelAt && job?.status === "running") job.cancel();
      const r = rng.next();
      const hot = rng.chance(0.75);
      const s0 = rng.int(0, (hot ? HOT : SIZE) / SECTOR - 1);
      const n = Math.min(SECTORS - s0, rng.chance(0.2) ? 128 : rng.int(1, 33));
      if (r < 0.45) {
        const v = ++version;
        const data = new Uint8Array(n * SECTOR);
        for (let i = 0; i < n; i++) {
          sectorContent(v, s0 + i, template, scratch);
          data.set(scratch, i * SECTOR);
          model.wrote(s0 + i, v);
        }
        await device.write(s0 * SECTOR, data);
      } else if (r < 0.52) {
        for (let i = 0; i < n; i++) model.wrote(s0 + i, -1);
        await device.writeZeroes(s0 * SECTOR, n * SECTOR);
      } else if (r < 0.8) {
        const buf = new Uint8Array(n * SECTOR);
        await device.read(s0 * SECTOR, buf);
        for (let i = 0; i < n; i++) {
          sectorContent(model.current[s0 + i]!, s0 + i, template, scratch);
          assert.deepEqual(buf.subarray(i * SECTOR, (i + 1) * SECTOR), scratch, "live read");
        }
      } else {
        await device.flush();
        model.flushed();
      }
      await clock.sleep(1);
    }
    if (job) await job.concluded;
  });
  return { cuts: storage.cuts, template, writes: storage.writes };
}

/** Whether `got` is version `v` of sector `s`; the fast path for zeros is a plain loop. */
function sameAs(
  v: Version,
  s: number,
  got: Uint8Array,
  template: Uint8Array | null,
  scratch: Uint8Array,
): boolean {
  sectorContent(v, s, template, scratch);
  for (let i = 0; i < SECTOR; i++) if (got[i] !== scratch[i]) return false;
  return true;
}

/** Reopens one surviving disk and checks every promise. */
async function verify(cut: Cut, template: Uint8Array | null, what: string): Promise<number> {
  const image = await QedImage.open(cut.storage);
  const check = await image.check();
  assert.equal(check.corruptions, 0, `${what}: corruption after repair`);
  assert.equal(check.checkErrors, 0, `${what}: check errors`);
  const base = image.backingFile !== undefined && template ? templateOf(template) : null;
  const top = qedNode(image, { nodeName: "ov", filename: "ov.qed", backing: base });
  const all = new Uint8Array(SIZE);
  await top.read(0, all);
  const expect = new Uint8Array(SECTOR);
  for (let s = 0; s < SECTORS; s++) {
    const got = all.subarray(s * SECTOR, (s + 1) * SECTOR);
    if (sameAs(cut.stable[s]!, s, got, template, expect)) continue;
    const later = cut.since.get(s) ?? [];
    if (!later.some((v) => sameAs(v, s, got, template, expect))) {
      assert.fail(
        `${what}: sector ${s} (offset ${s * SECTOR}) reads neither its flushed version ` +
          `${cut.stable[s]} nor a later one [${cut.since.get(s) ?? []}]`,
      );
    }
  }
  if (base) {
    const jobs = new JobRegistry();
    const events: JobEvent[] = [];
    jobs.on((e) => events.push(e));
    const job = startStream(jobs, top, { jobId: "after", parallel: 2 });
    await job.concluded;
    const end = events.filter((e) => e.event.startsWith("BLOCK_JOB_"));
    assert.equal(end.length, 1, `${what}: stream events ${JSON.stringify(end)}`);
    assert.equal(end[0]!.event, "BLOCK_JOB_COMPLETED");
    assert.equal((end[0]!.data as { error?: string }).error, undefined, `${what}: stream error`);
    assert.equal(top.backing, null);
    assert.equal(image.backingFile, undefined);
    const after = new Uint8Array(SIZE);
    await top.read(0, after);
    for (let i = 0; i < SIZE; i++) {
      if (after[i] !== all[i]) assert.fail(`${what}: the stream changed byte ${i}`);
    }
    const again = await image.check();
    assert.equal(again.corruptions, 0, `${what}: corruption after the stream`);
  }
  await image.close();
  return check.leaks;
}

async function campaign(runs: number, cutChance: number) {
  const totals = {
    runs: 0,
    writes: 0,
    cuts: 0,
    torn: 0,
    leaks: 0,
    backing: 0,
    plain: 0,
    workloadMs: 0,
    verifyMs: 0,
  };
  for (const seed of seeds()) {
    for (let run = 0; run < runs; run++) {
      const withBacking = run % 3 !== 2;
      const runSeed = (seed + run * 7919) >>> 0;
      let t = performance.now();
      const { cuts, template, writes } = await workload(runSeed, withBacking, cutChance);
      totals.workloadMs += Math.round(performance.now() - t);
      t = performance.now();
      totals.runs++;
      totals.writes += writes;
      for (const cut of cuts) {
        const what = `seed ${seed} run ${run} (run seed ${runSeed}, ${
          withBacking ? "backing" : "no backing"
        }) cut after write ${cut.write} mode ${cut.mode}`;
        totals.leaks += await verify(cut, template, what);
        totals.cuts++;
        if (cut.mode === "ordered" || cut.mode === "reordered") totals.torn++;
        if (withBacking) totals.backing++;
        else totals.plain++;
      }
      totals.verifyMs += Math.round(performance.now() - t);
    }
  }
  return totals;
}

Deno.test("power cuts during guest I/O, copy-on-read and a stream never cost flushed data or leave garbage", async () => {
  const started = performance.now();
  const totals = await campaign(count(28, 400), 0.06);
  report("power-cut", {
    ...totals,
    seconds: ((performance.now() - started) / 1000).toFixed(1),
  });
  assert.ok(totals.cuts > 0);
});
