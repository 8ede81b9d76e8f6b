/**
 * Races between guest I/O and the stream job, explored by fast-check's
 * scheduler: every node request and every job sleep waits for the scheduler,
 * which releases them in a random order.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { abortReason, type Clock } from "../../io/clock.ts";
import { BlockDevice } from "../../block/device.ts";
import { JobError } from "../../block/error.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import { startStream } from "../../block/stream_job.ts";
import { streamOne } from "../../block/stream_one.ts";
import { seeds } from "../_tools.ts";
import {
  firstDiff,
  memOverlay,
  patternBytes,
  readAll,
  scheduledNode,
  templateNode,
} from "./_fixtures.ts";

/** A clock whose sleeps end when the scheduler says so; time moves by the slept amount. */
function schedulerClock(s: fc.Scheduler): Clock {
  let now = 0;
  return {
    now: () => now,
    wallTime: () => now,
    sleep(ms: number, signal?: AbortSignal): Promise<void> {
      if (signal?.aborted) return Promise.reject(abortReason(signal));
      return new Promise((resolve, reject) => {
        const onAbort = () => reject(abortReason(signal!));
        signal?.addEventListener("abort", onAbort, { once: true });
        s.schedule(Promise.resolve(), `sleep ${ms}`).then(() => {
          signal?.removeEventListener("abort", onAbort);
          now += Math.max(0, ms);
          resolve();
        });
      });
    },
  };
}

type GuestOp =
  | { op: "write"; at: number; len: number; fill: number }
  | { op: "zero"; at: number; len: number }
  | { op: "read"; at: number; len: number };

type ControlOp =
  | { op: "speed"; speed: number }
  | { op: "pause" }
  | { op: "resume" }
  | { op: "cancel" }
  | { op: "yield" };

const SECTOR = 512;

const scenario = fc.record({
  clusterSize: fc.constantFrom(4096, 8192),
  clusters: fc.integer({ min: 2, max: 20 }),
  tailSectors: fc.integer({ min: 0, max: 7 }),
  runs: fc.array(
    fc.record({
      length: fc.integer({ min: 1, max: 40 }).map((n) => n * SECTOR),
      fill: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 255 })),
    }),
    { minLength: 1, maxLength: 6 },
  ),
  prewrites: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 16 })), { maxLength: 3 }),
  split: fc.double({ min: 0, max: 1, noNaN: true }),
  guests: fc.tuple(
    fc.array(guestOp(), { maxLength: 8 }),
    fc.array(guestOp(), { maxLength: 8 }),
  ),
  control: fc.array(
    fc.oneof(
      fc.constantFrom<ControlOp>({ op: "pause" }, { op: "resume" }, { op: "yield" }, {
        op: "yield",
      }),
      fc.constantFrom(0, 1, 65536, 1 << 20).map((speed): ControlOp => ({ op: "speed", speed })),
      fc.constant<ControlOp>({ op: "cancel" }),
    ),
    { maxLength: 8 },
  ),
  chunkSectors: fc.constantFrom(1, 8, 16, 1024),
  parallel: fc.constantFrom(1, 2, 4),
  speed: fc.constantFrom(0, 0, 4096, 1 << 20),
  copyOnRead: fc.boolean(),
  mode: fc.constantFrom("job", "job", "job", "streamOne"),
});

function guestOp(): fc.Arbitrary<{ op: GuestOp["op"]; a: number; b: number; fill: number }> {
  return fc.record({
    op: fc.constantFrom<GuestOp["op"]>("write", "read", "read", "zero"),
    a: fc.double({ min: 0, max: 1, noNaN: true }),
    b: fc.double({ min: 0, max: 1, noNaN: true }),
    fill: fc.integer({ min: 1, max: 255 }),
  });
}

/** Turns fractions into a 512-aligned op inside [lo, hi). */
function place(
  g: { op: GuestOp["op"]; a: number; b: number; fill: number },
  lo: number,
  hi: number,
): GuestOp | null {
  const sectors = (hi - lo) / SECTOR;
  if (sectors <= 0) return null;
  const start = Math.min(sectors - 1, Math.floor(g.a * sectors));
  const count = 1 + Math.floor(g.b * Math.min(sectors - start, 24));
  const at = lo + start * SECTOR;
  const len = Math.min(count * SECTOR, hi - at);
  if (g.op === "write") return { op: "write", at, len, fill: g.fill };
  return { op: g.op, at, len };
}

for (const seed of seeds()) {
  Deno.test(`stream job and streamOne() racing guest I/O keep every read coherent and the result complete (seed ${seed})`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), scenario, async (s, sc) => {
        const size = sc.clusters * sc.clusterSize + sc.tailSectors * SECTOR;
        const template = templateNode(patternBytes(size, sc.runs));
        const base = scheduledNode(template.node, s, "base");
        const inner = await memOverlay(base, { clusterSize: sc.clusterSize });
        const model = template.bytes.slice();
        for (const [a, n] of sc.prewrites) {
          const at = (a % (size / SECTOR)) * SECTOR;
          const len = Math.min(n * SECTOR, size - at);
          const data = new Uint8Array(len).fill(0x5a);
          await s.waitFor(inner.write(at, data));
          model.set(data, at);
        }
        const top = scheduledNode(inner, s, "top");
        const device = new BlockDevice(top, { copyOnRead: sc.copyOnRead });
        const jobs = new JobRegistry({ clock: schedulerClock(s) });
        const job = sc.mode === "job"
          ? startStream(jobs, top, {
            jobId: "job0",
            speed: sc.speed,
            chunkSize: sc.chunkSectors * SECTOR,
            parallel: sc.parallel,
          })
          : undefined;
        const pieces = async () => {
          if (job) return await job.concluded;
          for (let at = 0;;) {
            const r = await streamOne(device, at, { chunkSize: sc.chunkSectors * SECTOR });
            if (r.done) return assert.ok(r.completed, "streamOne completes at the end");
            at = r.next;
          }
        };

        const splitAt = Math.floor(sc.split * (size / SECTOR)) * SECTOR;
        const regions: [number, number][] = [[0, splitAt], [splitAt, size]];
        const guest = async (ops: typeof sc.guests[0], [lo, hi]: [number, number]) => {
          for (const g of ops) {
            const op = place(g, lo, hi);
            if (!op) continue;
            if (op.op === "write") {
              const data = new Uint8Array(op.len).fill(op.fill);
              await device.write(op.at, data);
              model.set(data, op.at);
            } else if (op.op === "zero") {
              await device.writeZeroes(op.at, op.len);
              model.fill(0, op.at, op.at + op.len);
            } else {
              const buf = new Uint8Array(op.len);
              await device.read(op.at, buf);
              const want = model.subarray(op.at, op.at + op.len);
              const d = firstDiff(buf, want);
              assert.equal(d, -1, `read [${op.at}, +${op.len}) differs at +${d}`);
            }
          }
        };
        const control = async () => {
          if (!job) return;
          for (const c of sc.control) {
            await s.schedule(Promise.resolve(), `control ${c.op}`);
            try {
              if (c.op === "speed") job.setSpeed(c.speed);
              else if (c.op === "pause") job.pause();
              else if (c.op === "resume") job.resume();
              else if (c.op === "cancel") job.cancel({ force: true });
            } catch (e) {
              if (!(e instanceof JobError)) throw e;
            }
          }
          if (job.userPaused && job.status !== "null" && job.status !== "concluded") job.resume();
        };
        await s.waitFor(Promise.all([
          guest(sc.guests[0], regions[0]!),
          guest(sc.guests[1], regions[1]!),
          control(),
          pieces(),
        ]));

        if (job?.error !== undefined) {
          assert.equal(job.error, "Operation canceled");
          assert.ok(top.backing, "a cancelled stream keeps the backing");
          assert.equal(firstDiff(await s.waitFor(readAll(device)), model), -1);
          const again = startStream(jobs, top, { jobId: "job1", parallel: sc.parallel });
          await s.waitFor(again.concluded);
          assert.equal(again.error, undefined);
        }
        assert.equal(top.backing, null);
        await inner.image.flush(); // clears need-check, as qemu's drain would
        assert.equal(inner.image.header.features, 0n);
        inner.image.backing = null;
        assert.equal(
          firstDiff(await readAll(inner), model),
          -1,
          "overlay == template + guest writes",
        );
        const check = await inner.image.check();
        assert.equal(check.corruptions + check.leaks + check.checkErrors, 0);
      }),
      { seed, numRuns: 500 },
    );
  });
}
