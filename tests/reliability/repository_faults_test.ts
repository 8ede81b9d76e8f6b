/**
 * Repository-fault campaign (issue 8, part 2).
 *
 * A stream job and a guest share a QED overlay whose template comes from a
 * faulty repository: the simulated {@linkcode RemoteTemplate} (error rate,
 * outage window, slow period) or a failing byte range, and, where installed,
 * nbdkit's error filter switched on and off by a trigger file. For every
 * `on-error` policy the job must act as qemu's `block_job_error_action`
 * does (events, pause and retry, final status, backing kept or removed); a
 * guest read fails only where the repository must serve it; the final image
 * is compared byte for byte with template + guest writes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { BlockDevice } from "../../block/device.ts";
import type { Job, JobEvent } from "../../block/job.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import type { BlockNode } from "../../block/node.ts";
import { openNbdNode } from "../../block/nbd_node.ts";
import { qedNode } from "../../block/qed_node.ts";
import { sourceNode } from "../../block/source_node.ts";
import { startStream } from "../../block/stream_job.ts";
import type { OnErrorPolicy } from "../../block/job.ts";
import { Random } from "../../sim/random.ts";
import { RemoteTemplate, type RemoteTemplateOptions } from "../../sim/remote_template.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";
import { faultyNode, memOverlay, patternBytes } from "../block/_fixtures.ts";
import { programsPresent, seeds, tempDir } from "../_tools.ts";
import { assertTyped, count, report } from "./_campaign.ts";

const KiB = 1024;
const SIZE = 2048 * KiB;
const SECTOR = 512;
const POLICIES: OnErrorPolicy[] = ["report", "ignore", "stop", "enospc", "auto"];

/** qemu's block_job_error_action, written out independently of block/job.ts. */
function qemuAction(policy: OnErrorPolicy, kind: "EIO" | "ENOSPC"): "report" | "ignore" | "stop" {
  if (policy === "report") return "report";
  if (policy === "ignore") return "ignore";
  if (policy === "stop") return "stop";
  return kind === "ENOSPC" ? "stop" : "report";
}

type FaultKind = "error-rate" | "range-eio" | "range-enospc" | "outage" | "slow";
const FAULTS: FaultKind[] = ["error-rate", "range-eio", "range-enospc", "outage", "slow"];
const RANGE = { offset: 768 * KiB, length: 128 * KiB };

function templateBytes(rng: Random): Uint8Array {
  return patternBytes(SIZE, [
    { length: rng.int(1, 8) * 64 * KiB, fill: rng.int(1, 255) },
    { length: rng.int(1, 4) * 64 * KiB, fill: 0 },
    { length: rng.int(1, 8) * 64 * KiB, fill: rng.int(1, 255) },
  ]);
}

function cleanBacking(bytes: Uint8Array) {
  return {
    size: bytes.length,
    read(offset: number, buf: Uint8Array) {
      buf.set(bytes.subarray(offset, offset + buf.length));
      return Promise.resolve();
    },
  };
}

interface Outcome {
  events: JobEvent[];
  guestErrors: number;
  guestReads: number;
  jobErrors: number;
  retries: number;
}

/** Checks the events, the backing link and the bytes after one faulty stream. */
async function judge(
  what: string,
  policy: OnErrorPolicy,
  kind: "EIO" | "ENOSPC",
  top: Awaited<ReturnType<typeof memOverlay>>,
  expected: Uint8Array,
  template: Uint8Array,
  outcome: Outcome,
): Promise<void> {
  const ends = outcome.events.filter((e) =>
    e.event === "BLOCK_JOB_COMPLETED" || e.event === "BLOCK_JOB_CANCELLED"
  );
  assert.equal(ends.length, 1, `${what}: terminal events ${JSON.stringify(ends)}`);
  const errors = outcome.events.filter((e) => e.event === "BLOCK_JOB_ERROR");
  for (const e of errors) {
    assert.deepEqual(e.data, {
      device: "job0",
      operation: "read",
      action: qemuAction(policy, kind),
    }, what);
  }
  const end = ends[0]!;
  const error = (end.data as { error?: string }).error;
  const action = qemuAction(policy, kind);
  if (errors.length === 0 || action === "stop") {
    assert.equal(end.event, "BLOCK_JOB_COMPLETED", what);
    assert.equal(error, undefined, `${what}: ${error}`);
    assert.equal(top.backing, null, `${what}: backing kept after a clean stream`);
    assert.equal(top.image.backingFile, undefined);
  } else {
    assert.equal(end.event, "BLOCK_JOB_COMPLETED", what);
    assert.equal(error, kind === "ENOSPC" ? "No space left on device" : "Input/output error", what);
    assert.ok(top.backing, `${what}: backing removed after a failed stream`);
    if (action === "ignore") {
      const d = end.data as { offset: number; len: number };
      assert.equal(d.offset, d.len, `${what}: ignore goes on to the end`);
    }
  }
  const check = await top.image.check();
  assert.equal(check.corruptions, 0, what);
  // The bytes, read with a healthy template where the link was kept.
  if (top.image.backingFile !== undefined) top.image.backing = cleanBacking(template);
  const got = new Uint8Array(SIZE);
  await top.image.read(0, got);
  for (let i = 0; i < SIZE; i++) {
    if (got[i] !== expected[i]) assert.fail(`${what}: byte ${i} copied wrong or lost`);
  }
  if (top.image.backingFile !== undefined) {
    // A later stream over a healthy repository completes the job.
    const jobs = new JobRegistry();
    const again: JobEvent[] = [];
    jobs.on((e) => again.push(e));
    // A new node over the same image: the old one's backing is the faulty repository.
    const healthy = qedNode(top.image, {
      nodeName: "ov2",
      backing: sourceNode(cleanBacking(template), {
        nodeName: "tpl",
        driver: "raw",
        filename: "t",
      }),
    });
    const job = startStream(jobs, healthy, { jobId: "again" });
    await job.concluded;
    assert.ok(again.some((e) => e.event === "BLOCK_JOB_COMPLETED" && !("error" in e.data)), what);
    const after = new Uint8Array(SIZE);
    await top.image.read(0, after);
    for (let i = 0; i < SIZE; i++) {
      if (after[i] !== expected[i]) assert.fail(`${what}: byte ${i} wrong after the second stream`);
    }
  }
}

/** Resumes a job paused by an error (qemu: the management tool's `block-job-resume`). */
async function resumeWhilePaused(job: Job, clock: VirtualClock, outcome: Outcome) {
  while (job.status !== "concluded" && job.status !== "null") {
    await clock.sleep(25);
    if (job.status === "paused") {
      outcome.retries++;
      if (outcome.retries > 400) job.cancel({ force: true });
      else job.resume();
    }
  }
}

async function simScenario(
  seed: number,
  policy: OnErrorPolicy,
  fault: FaultKind,
): Promise<Outcome> {
  const what = `seed ${seed} policy ${policy} fault ${fault}`;
  const rng = new Random(seed);
  const clock = new VirtualClock();
  const template = templateBytes(rng.fork("template"));
  const options: RemoteTemplateOptions = {
    clock,
    rttMs: 2,
    bandwidth: 200e6,
    faults: {
      seed,
      ...(fault === "error-rate" ? { errorRate: 0.08 } : {}),
      ...(fault === "outage" ? { outages: [{ start: 5, end: 80 }] } : {}),
      ...(fault === "slow"
        ? { slowPeriods: [{ start: 0, end: 200, latencyFactor: 8, bandwidthDivisor: 4 }] }
        : {}),
    },
  };
  const repo = new RemoteTemplate(
    {
      size: SIZE,
      read(offset, buf) {
        buf.set(template.subarray(offset, offset + buf.length));
        return Promise.resolve();
      },
    },
    options,
  );
  let remote: BlockNode = repo.connect("vm");
  const kind = fault === "range-enospc" ? "ENOSPC" : "EIO";
  if (fault === "range-eio" || fault === "range-enospc") {
    remote = faultyNode(remote, { ...RANGE, code: kind, times: 3 });
  }
  const top = await memOverlay(remote, { size: SIZE, clusterSize: 65536 });
  const expected = template.slice();
  const written = new Uint8Array(SIZE / SECTOR);
  const write = async (device: BlockDevice, offset: number, length: number) => {
    const data = new Uint8Array(length).fill(rng.int(1, 255));
    await device.write(offset, data);
    expected.set(data, offset);
    written.fill(1, offset / SECTOR, (offset + length) / SECTOR);
  };
  const device = new BlockDevice(top, { copyOnRead: rng.chance(0.5) });
  // Some data of the guest before the stream, as after boot.
  await clock.run(async () => {
    for (let i = 0; i < 4; i++) {
      await write(device, rng.int(0, SIZE / 65536) * 65536, 65536);
    }
  });
  const jobs = new JobRegistry({ clock });
  const outcome: Outcome = { events: [], guestErrors: 0, guestReads: 0, jobErrors: 0, retries: 0 };
  jobs.on((e) => outcome.events.push(e));
  await clock.run(async () => {
    const job = startStream(jobs, device, {
      jobId: "job0",
      onError: policy,
      parallel: rng.int(1, 5),
      chunkSize: 128 * KiB,
    });
    const guest = (async () => {
      for (let i = 0; i < 30; i++) {
        await clock.sleep(rng.int(1, 8));
        const offset = rng.int(0, SIZE / SECTOR - 64) * SECTOR;
        const length = rng.int(1, 64) * SECTOR;
        if (rng.chance(0.3)) {
          // Whole clusters: a partial one would need the repository for its copy-on-write.
          await write(device, rng.int(0, SIZE / 65536) * 65536, 65536);
          continue;
        }
        const buf = new Uint8Array(length);
        outcome.guestReads++;
        try {
          await device.read(offset, buf);
          for (let j = 0; j < length; j++) {
            if (buf[j] !== expected[offset + j]) {
              assert.fail(`${what}: guest read wrong byte ${offset + j}`);
            }
          }
        } catch (e) {
          if (e instanceof assert.AssertionError) throw e;
          assertTyped(e, `${what}: guest read`);
          outcome.guestErrors++;
          // Only a read the repository must serve can fail: not one the overlay holds…
          const s0 = offset / SECTOR;
          const own = written.subarray(s0, s0 + length / SECTOR).every((b) => b === 1);
          assert.ok(!own, `${what}: guest read of its own data failed: ${e.message}`);
          // …and only while the repository is faulty there.
          assert.notEqual(fault, "slow", `${what}: a slow repository made a read fail`);
          if (fault === "range-eio" || fault === "range-enospc") {
            assert.ok(
              offset < RANGE.offset + RANGE.length && RANGE.offset < offset + length,
              `${what}: read [${offset}, +${length}) outside the faulty range failed`,
            );
          }
        }
      }
    })();
    await Promise.all([resumeWhilePaused(job, clock, outcome), guest]);
  }, { limit: 600_000 });
  outcome.jobErrors = outcome.events.filter((e) => e.event === "BLOCK_JOB_ERROR").length;
  await judge(what, policy, kind, top, expected, template, outcome);
  return outcome;
}

Deno.test("a faulty simulated repository: every on-error policy acts as qemu's, no data lost or copied wrong", async () => {
  const rounds = count(10, 200);
  const totals = { scenarios: 0, jobErrors: 0, retries: 0, guestReads: 0, guestErrors: 0 };
  for (const seed of seeds()) {
    for (let round = 0; round < rounds; round++) {
      for (const policy of POLICIES) {
        for (const fault of FAULTS) {
          const o = await simScenario((seed + round * 101) >>> 0, policy, fault);
          totals.scenarios++;
          totals.jobErrors += o.jobErrors;
          totals.retries += o.retries;
          totals.guestReads += o.guestReads;
          totals.guestErrors += o.guestErrors;
        }
      }
    }
  }
  report("repository-faults (sim)", totals);
  assert.ok(totals.jobErrors > 0, "the campaign injected no job error");
});

Deno.test({
  name: "nbdkit's error filter as the repository: every on-error policy acts as qemu's",
  ignore: !programsPresent("nbdkit"),
  fn: async () => {
    await using dir = await tempDir();
    const file = join(dir.path, "base.raw");
    const template = templateBytes(new Random(7));
    await Deno.writeFile(file, template);
    const totals = { scenarios: 0, jobErrors: 0, retries: 0 };
    for (const errno of ["EIO", "ENOSPC"] as const) {
      const sock = join(dir.path, `nbd-${errno}.sock`);
      const trigger = join(dir.path, `trigger-${errno}`);
      const nbdkit = new Deno.Command("nbdkit", {
        args: [
          "-f",
          "-U",
          sock,
          "--filter=error",
          "file",
          file,
          `error=${errno}`,
          "error-pread-rate=100%",
          `error-pread-file=${trigger}`,
        ],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      try {
        for (let i = 0; i < 250 && !(await connectable(sock)); i++) await sleep(20);
        for (const policy of POLICIES) {
          const what = `nbdkit error=${errno} policy ${policy}`;
          const remote = await openNbdNode(
            { address: { type: "unix", path: sock }, exportName: "" },
            { nodeName: "tpl", readOnly: true },
          );
          const top = await memOverlay(remote, { size: SIZE, clusterSize: 65536 });
          const expected = template.slice();
          const mine = new Uint8Array(65536).fill(0x5a);
          await top.write(0, mine);
          expected.set(mine, 0);
          const jobs = new JobRegistry();
          const outcome: Outcome = {
            events: [],
            guestErrors: 0,
            guestReads: 0,
            jobErrors: 0,
            retries: 0,
          };
          await Deno.writeFile(trigger, new Uint8Array());
          jobs.on((e) => {
            outcome.events.push(e);
            if (e.event === "BLOCK_JOB_ERROR") {
              // The repository recovers once the job has seen the error.
              try {
                Deno.removeSync(trigger);
              } catch { /* already gone */ }
            }
          });
          const device = new BlockDevice(top);
          // The guest reads its own data while the repository fails: that never fails.
          const own = new Uint8Array(65536);
          await device.read(0, own);
          assert.deepEqual(own, mine);
          // A read the repository must serve fails, as qemu's guest sees EIO/ENOSPC.
          await assert.rejects(device.read(1 << 20, new Uint8Array(4096)), (e) => {
            assertTyped(e, what);
            return true;
          });
          const job = startStream(jobs, device, { jobId: "job0", onError: policy, parallel: 2 });
          while (job.status !== "concluded" && job.status !== "null") {
            await sleep(10);
            if (job.status === "paused") {
              outcome.retries++;
              job.resume();
            }
          }
          outcome.jobErrors = outcome.events.filter((e) => e.event === "BLOCK_JOB_ERROR").length;
          assert.ok(outcome.jobErrors > 0, `${what}: no error reached the job`);
          await judge(what, policy, errno, top, expected, template, outcome);
          totals.scenarios++;
          totals.jobErrors += outcome.jobErrors;
          totals.retries += outcome.retries;
          await remote.close();
        }
      } finally {
        nbdkit.kill("SIGTERM");
        await nbdkit.status;
        await nbdkit.stderr.cancel();
      }
    }
    report("repository-faults (nbdkit error filter)", totals);
  },
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function connectable(path: string): Promise<boolean> {
  try {
    (await Deno.connect({ transport: "unix", path })).close();
    return true;
  } catch {
    return false;
  }
}
