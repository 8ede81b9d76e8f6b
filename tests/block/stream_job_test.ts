import assert from "node:assert/strict";
import { VirtualClock } from "../../sim/virtual_clock.ts";
import { BlockDevice } from "../../block/device.ts";
import { BlockGraph } from "../../block/graph.ts";
import type { JobEvent } from "../../block/job.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import { startStream, type StreamJob } from "../../block/stream_job.ts";
import { QED_F_BACKING_FILE, QED_F_BACKING_FORMAT_NO_PROBE } from "../../qed/header.ts";
import {
  faultyNode,
  firstDiff,
  memOverlay,
  patternBytes,
  readAll,
  templateNode,
} from "./_fixtures.ts";

const MiB = 1 << 20;
const KiB = 1024;

/** The transcripts' layout, scaled: data, a hole, data, a hole; the overlay holds [1M, 2M). */
async function standard(size = 8 * MiB, clusterSize = 65536) {
  const bytes = patternBytes(size, [
    { length: 2 * MiB, fill: 0xaa },
    { length: 2 * MiB, fill: 0 },
    { length: 1 * MiB, fill: 0xbb },
    { length: 3 * MiB, fill: 0 },
  ]);
  const template = templateNode(bytes);
  const top = await memOverlay(template.node, { clusterSize });
  const written = new Uint8Array(MiB).fill(0xcc);
  await top.write(MiB, written);
  const expected = bytes.slice();
  expected.set(written, MiB);
  return { template, top, expected };
}

function recorder(jobs: JobRegistry) {
  const events: string[] = [];
  const full: JobEvent[] = [];
  jobs.on((e) => {
    full.push(e);
    events.push(e.event === "JOB_STATUS_CHANGE" ? e.data.status : e.event);
  });
  return { events, full };
}

Deno.test("startStream() streams the whole chain, emits qemu's events and removes the backing link", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const { top, expected } = await standard();
  const { events, full } = recorder(jobs);
  await clock.run(async () => {
    const job = startStream(jobs, top, { jobId: "job0", parallel: 1 });
    assert.deepEqual(events, ["created", "running"]);
    assert.deepEqual(job.info(), {
      "auto-finalize": true,
      "io-status": "ok",
      device: "job0",
      "auto-dismiss": true,
      busy: true,
      len: 8 * MiB,
      offset: 0,
      status: "running",
      paused: false,
      speed: 0,
      ready: false,
      type: "stream",
    });
    await job.concluded;
  });
  assert.deepEqual(events, [
    "created",
    "running",
    "waiting",
    "pending",
    "BLOCK_JOB_COMPLETED",
    "concluded",
    "null",
  ]);
  assert.deepEqual(full[4]!.data, {
    device: "job0",
    len: 8 * MiB,
    offset: 8 * MiB,
    speed: 0,
    type: "stream",
  });
  assert.equal(jobs.queryJobs().length, 0);
  assert.equal(top.backing, null);
  assert.equal(top.image.header.features, 0n);
  assert.equal(top.image.header.backingFilenameOffset, 64);
  assert.equal(top.image.header.backingFilenameSize, 0);
  top.image.backing = null;
  assert.equal(firstDiff(await readAll(top), expected), -1);
  // Every cluster is allocated; the holes as zero clusters.
  const map = await top.image.map();
  assert.ok(map.every((e) => e.kind !== "unallocated"));
  assert.deepEqual(
    map.filter((e) => e.kind === "zero").map((e) => [e.offset, e.length]),
    [[2 * MiB, 2 * MiB], [5 * MiB, 3 * MiB]],
  );
  const check = await top.image.check();
  assert.equal(check.corruptions + check.leaks, 0);
});

Deno.test("startStream() on a node without backing completes at once with len 0", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const top = await memOverlay(null, { size: MiB });
  const { events, full } = recorder(jobs);
  const job = startStream(jobs, top, { jobId: "job1" });
  assert.equal(job.nothingToStream, true);
  await job.concluded;
  assert.deepEqual(events, [
    "created",
    "running",
    "waiting",
    "pending",
    "BLOCK_JOB_COMPLETED",
    "concluded",
    "null",
  ]);
  assert.deepEqual(full[4]!.data, { device: "job1", len: 0, offset: 0, speed: 0, type: "stream" });
});

Deno.test("startStream() at 1 MiB/s copies one chunk per half second on the virtual clock", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const { top } = await standard();
  const samples: [number, number, boolean][] = [];
  await clock.run(async () => {
    const job = startStream(jobs, top, { jobId: "job0", speed: MiB, parallel: 1 });
    for (const t of [1, 251, 501, 751, 1001, 1251, 1501]) {
      await clock.sleep(t - clock.now());
      samples.push([t, job.currentProgress, job.busy]);
    }
    job.setSpeed(4 * MiB);
    assert.equal(job.info().speed, 4 * MiB);
    job.cancel();
    await job.concluded;
  });
  assert.deepEqual(samples, [
    [1, 512 * KiB, false],
    [251, 512 * KiB, false],
    [501, MiB, false],
    [751, MiB, false],
    [1001, 2 * MiB + 512 * KiB, false],
    [1251, 2 * MiB + 512 * KiB, false],
    [1501, 3 * MiB, false],
  ]);
  assert.ok(top.backing, "a cancelled stream keeps the backing link");
});

Deno.test("setSpeed(0) wakes a sleeping stream at once", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const { top } = await standard();
  await clock.run(async () => {
    const job = startStream(jobs, top, { jobId: "job0", speed: 1024, parallel: 1 });
    await clock.sleep(10);
    assert.equal(job.currentProgress, 512 * KiB);
    job.setSpeed(0);
    await job.concluded;
    assert.ok(clock.now() < 20, `finished at ${clock.now()} ms`);
  });
  assert.equal(top.backing, null);
});

Deno.test("pause, resume and forced cancel follow qemu's events and texts", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const { top } = await standard();
  const { events } = recorder(jobs);
  await clock.run(async () => {
    const job = startStream(jobs, top, { jobId: "job0", speed: 2 * MiB, parallel: 1 });
    await clock.sleep(1000);
    job.pause();
    assert.deepEqual(events.slice(-1), ["paused"]);
    const info = job.info();
    assert.equal(info.paused, true);
    assert.equal(info.busy, false);
    assert.equal(info.status, "paused");
    assert.throws(() => job.pause(), { message: "Job is already paused" });
    assert.throws(() => job.cancel(), {
      message: "The block job for device 'job0' is currently paused",
    });
    const before = job.currentProgress;
    job.setSpeed(0);
    await clock.sleep(5000);
    assert.equal(job.currentProgress, before, "a paused job does not progress");
    job.cancel({ force: true });
    await job.concluded;
  });
  assert.deepEqual(events.slice(2), [
    "paused",
    "running",
    "aborting",
    "BLOCK_JOB_CANCELLED",
    "concluded",
    "null",
  ]);
  assert.ok(top.backing);
});

Deno.test("resume continues a paused stream to completion", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const { top, expected } = await standard();
  const { events } = recorder(jobs);
  await clock.run(async () => {
    const job = startStream(jobs, top, { jobId: "job0", speed: 2 * MiB, parallel: 1 });
    await clock.sleep(300);
    assert.throws(() => job.resume(), { message: "Can't resume a job that was not paused" });
    job.pause();
    job.resume();
    await job.concluded;
  });
  assert.deepEqual(events.slice(0, 4), ["created", "running", "paused", "running"]);
  assert.equal(events.at(-1), "null");
  top.image.backing = null;
  assert.equal(firstDiff(await readAll(top), expected), -1);
});

async function failing(code: "EIO" | "ENOSPC", times?: number) {
  const size = 8 * MiB;
  const bytes = patternBytes(size, [{ length: MiB, fill: 0x11 }, { length: MiB, fill: 0x22 }]);
  const template = templateNode(bytes);
  const broken = faultyNode(template.node, {
    offset: 4 * MiB,
    length: 512,
    code,
    ...(times !== undefined ? { times } : {}),
  });
  const top = await memOverlay(broken, { clusterSize: 65536 });
  await top.write(MiB, new Uint8Array(MiB).fill(0xcc));
  const expected = bytes.slice();
  expected.fill(0xcc, MiB, 2 * MiB);
  return { top, broken, expected };
}

Deno.test("on-error report fails the job at the chunk, keeps the backing and shows the error", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const { top } = await failing("EIO");
  const { events, full } = recorder(jobs);
  let job!: StreamJob;
  await clock.run(async () => {
    job = startStream(jobs, top, { jobId: "job0", autoDismiss: false, parallel: 1 });
    await job.concluded;
  });
  assert.deepEqual(events, [
    "created",
    "running",
    "BLOCK_JOB_ERROR",
    "aborting",
    "BLOCK_JOB_COMPLETED",
    "concluded",
  ]);
  assert.deepEqual(full[2]!.data, { device: "job0", operation: "read", action: "report" });
  assert.deepEqual(full[4]!.data, {
    device: "job0",
    len: 8 * MiB,
    offset: 4 * MiB,
    speed: 0,
    type: "stream",
    error: "Input/output error",
  });
  assert.equal(job.info().error, "Input/output error");
  assert.equal(job.info().status, "concluded");
  assert.equal(job.info().busy, false);
  assert.deepEqual(jobs.queryJobs(), [{
    "current-progress": 4 * MiB,
    status: "concluded",
    "total-progress": 8 * MiB,
    type: "stream",
    id: "job0",
    error: "Input/output error",
  }]);
  job.dismiss();
  assert.equal(events.at(-1), "null");
  assert.ok(top.backing);
});

Deno.test("on-error ignore goes on, counts the chunk and still fails the job", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const { top } = await failing("EIO");
  const { events, full } = recorder(jobs);
  const job = startStream(jobs, top, { jobId: "job0", onError: "ignore", parallel: 1 });
  await job.concluded;
  assert.deepEqual(events, [
    "created",
    "running",
    "BLOCK_JOB_ERROR",
    "aborting",
    "BLOCK_JOB_COMPLETED",
    "concluded",
    "null",
  ]);
  assert.deepEqual(full[4]!.data, {
    device: "job0",
    len: 8 * MiB,
    offset: 8 * MiB,
    speed: 0,
    type: "stream",
    error: "Input/output error",
  });
  assert.ok(top.backing);
});

for (const [policy, code] of [["stop", "EIO"], ["enospc", "ENOSPC"], ["auto", "ENOSPC"]] as const) {
  Deno.test(`on-error ${policy} with ${code} pauses the job and resume retries the same chunk`, async () => {
    const clock = new VirtualClock();
    const jobs = new JobRegistry({ clock });
    const { top, broken, expected } = await failing(code, 1);
    const { events, full } = recorder(jobs);
    await clock.run(async () => {
      const job = startStream(jobs, top, { jobId: "job0", onError: policy, parallel: 1 });
      await clock.sleep(10);
      assert.deepEqual(events, ["created", "running", "BLOCK_JOB_ERROR", "paused"]);
      assert.deepEqual(full[2]!.data, { device: "job0", operation: "read", action: "stop" });
      const info = job.info();
      assert.equal(info.status, "paused");
      assert.equal(info.paused, true);
      assert.equal(info["io-status"], code === "ENOSPC" ? "nospace" : "failed");
      assert.equal(info.offset, 4 * MiB);
      job.resume();
      assert.equal(job.info()["io-status"], "ok");
      await job.concluded;
    });
    assert.equal(broken.failures, 1);
    assert.deepEqual(events.slice(4), [
      "running",
      "waiting",
      "pending",
      "BLOCK_JOB_COMPLETED",
      "concluded",
      "null",
    ]);
    assert.equal(top.backing, null);
    assert.equal(firstDiff(await readAll(top), expected), -1);
  });
}

Deno.test("on-error enospc with EIO reports", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const { top } = await failing("EIO");
  const { full } = recorder(jobs);
  const job = startStream(jobs, top, { jobId: "job0", onError: "enospc" });
  await job.concluded;
  assert.deepEqual(full[2]!.data, { device: "job0", operation: "read", action: "report" });
});

Deno.test("auto-finalize false waits in pending; finalize rewrites the header then", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const { top } = await standard();
  const { events, full } = recorder(jobs);
  const job = startStream(jobs, top, { jobId: "job0", autoFinalize: false });
  while (job.status !== "pending") await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(events, ["created", "running", "waiting", "pending", "BLOCK_JOB_PENDING"]);
  assert.deepEqual(full[4]!.data, { type: "stream", id: "job0" });
  assert.ok(top.backing, "nothing changes before finalize");
  assert.notEqual(top.image.header.features, 0n);
  assert.throws(() => job.pause(), {
    message: "Job 'job0' in state 'pending' cannot accept command verb 'pause'",
  });
  assert.throws(() => job.dismiss(), {
    message: "Job 'job0' in state 'pending' cannot accept command verb 'dismiss'",
  });
  await job.finalize();
  assert.deepEqual(events.slice(5), ["BLOCK_JOB_COMPLETED", "concluded", "null"]);
  assert.equal(top.backing, null);
  assert.equal(top.image.header.features, 0n);
});

Deno.test("cancel while pending aborts with offset == len and keeps the backing", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const { top } = await standard();
  const { events, full } = recorder(jobs);
  const job = startStream(jobs, top, { jobId: "job0", autoFinalize: false });
  while (job.status !== "pending") await new Promise((r) => setTimeout(r, 0));
  job.cancel();
  await job.concluded;
  assert.deepEqual(events.slice(5), ["aborting", "BLOCK_JOB_CANCELLED", "concluded", "null"]);
  assert.equal((full[6]!.data as { offset: number }).offset, 8 * MiB);
  assert.ok(top.backing);
});

Deno.test("auto-dismiss false keeps the concluded job until dismiss", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const { top } = await standard();
  const job = startStream(jobs, top, { jobId: "job0", autoDismiss: false });
  await job.concluded;
  assert.equal(jobs.queryBlockJobs()[0]!.status, "concluded");
  assert.equal(jobs.queryBlockJobs()[0]!.offset, 8 * MiB);
  assert.throws(() => job.pause(), {
    message: "Job 'job0' in state 'concluded' cannot accept command verb 'pause'",
  });
  assert.throws(() => job.setSpeed(1), {
    message: "Job 'job0' in state 'concluded' cannot accept command verb 'set-speed'",
  });
  assert.throws(() => job.cancel(), {
    message: "Job 'job0' in state 'concluded' cannot accept command verb 'cancel'",
  });
  await assert.rejects(() => job.finalize(), {
    message: "Job 'job0' in state 'concluded' cannot accept command verb 'finalize'",
  });
  job.dismiss();
  assert.deepEqual(jobs.queryBlockJobs(), []);
  assert.throws(() => jobs.find("job0"), { message: "Job not found" });
  assert.throws(() => jobs.findBlockJob("job0"), { message: "Block job 'job0' not found" });
  assert.equal(top.backing, null);
});

Deno.test("startStream() validates in qemu's order: busy node before a duplicate id, speed after creation", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const { top } = await standard();
  const other = await memOverlay(templateNode(new Uint8Array(MiB)).node, { nodeName: "ov2" });
  assert.throws(() => startStream(jobs, top), { message: "Invalid job ID ''" });
  assert.throws(() => startStream(jobs, top, { jobId: "1bad" }), {
    message: "Invalid job ID '1bad'",
  });
  const { events } = recorder(jobs);
  assert.throws(() => startStream(jobs, top, { jobId: "job0", speed: -5 }), {
    message: "Parameter 'speed' expects a non-negative value",
  });
  assert.deepEqual(events, ["created", "null"]);
  await clock.run(async () => {
    const job = startStream(jobs, top, { jobId: "job0", speed: MiB });
    assert.throws(() => startStream(jobs, top, { jobId: "job0" }), {
      message: "Node 'ov' is busy: block device is in use by block job: stream",
    });
    assert.throws(() => startStream(jobs, other, { jobId: "job0" }), {
      message: "Job ID 'job0' already in use",
    });
    assert.throws(() => job.complete(), {
      message: "Job 'job0' in state 'running' cannot accept command verb 'complete'",
    });
    await assert.rejects(() => job.finalize(), {
      message: "Job 'job0' in state 'running' cannot accept command verb 'finalize'",
    });
    assert.throws(() => job.dismiss(), {
      message: "Job 'job0' in state 'running' cannot accept command verb 'dismiss'",
    });
    assert.throws(() => job.setSpeed(-5), {
      message: "Parameter 'speed' expects a non-negative value",
    });
    job.cancel();
    await job.concluded;
  });
  // The blocker is gone after the job.
  const again = startStream(jobs, top, { jobId: "job0" });
  await again.concluded;
  assert.equal(top.backing, null);
});

Deno.test("startStream() with base-node streams mid into top and records the base", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const graph = new BlockGraph();
  const size = 4 * MiB;
  const baseBytes = patternBytes(size, [{ length: MiB, fill: 0xaa }, { length: 3 * MiB, fill: 0 }]);
  const base = templateNode(baseBytes, "base", "/images/base.raw");
  const mid = await memOverlay(base.node, { nodeName: "mid", clusterSize: 65536 });
  await mid.write(MiB, new Uint8Array(MiB).fill(0xbb));
  const top = await memOverlay(mid, { nodeName: "top", clusterSize: 65536 });
  await top.write(2 * MiB, new Uint8Array(512 * KiB).fill(0xcc));
  for (const n of [base.node, mid, top]) graph.addNode(n);
  const before = await readAll(new BlockDevice(top));

  assert.throws(() => startStream(jobs, top, { jobId: "j", base: "/x", baseNode: "base", graph }), {
    message: "'base' and 'base-node' cannot be specified at the same time",
  });
  assert.throws(() => startStream(jobs, top, { jobId: "j", base: "/x", bottom: "mid", graph }), {
    message: "'base' and 'bottom' cannot be specified at the same time",
  });
  assert.throws(
    () => startStream(jobs, top, { jobId: "j", baseNode: "base", bottom: "mid", graph }),
    {
      message: "'bottom' and 'base-node' cannot be specified at the same time",
    },
  );
  assert.throws(() => startStream(jobs, top, { jobId: "j", base: "/nonexist.img", graph }), {
    message: "Can't find '/nonexist.img' in the backing chain",
  });
  assert.throws(() => startStream(jobs, top, { jobId: "j", baseNode: "nonexist", graph }), {
    message: "Cannot find device='' nor node-name='nonexist'",
  });
  assert.throws(() => startStream(jobs, top, { jobId: "j", baseNode: "top", graph }), {
    message: "Node 'top' is not a backing image of 'top'",
  });
  assert.throws(() => startStream(jobs, mid, { jobId: "j", baseNode: "top", graph }), {
    message: "Node 'top' is not a backing image of 'mid'",
  });
  assert.throws(() => startStream(jobs, mid, { jobId: "j", bottom: "top", graph }), {
    message: "Node 'top' is not in a chain starting from 'mid'",
  });
  assert.throws(() => startStream(jobs, top, { jobId: "j", backingFile: "x.raw", graph }), {
    message: "backing file specified, but streaming the entire chain",
  });
  assert.throws(
    () => startStream(jobs, top, { jobId: "j", bottom: "mid", backingFile: "x.raw", graph }),
    { message: "backing file specified, but streaming the entire chain" },
  );
  assert.throws(() => startStream(jobs, top, { jobId: "j", filterNodeName: "mid", graph }), {
    message: "Could not create node: Duplicate nodes with node-name='mid'",
  });

  await clock.run(async () => {
    const job = startStream(jobs, top, {
      jobId: "j1",
      baseNode: "base",
      filterNodeName: "cor0",
      graph,
      speed: MiB,
    });
    assert.equal(graph.getNode("cor0")?.driver, "copy-on-read");
    job.setSpeed(0);
    await job.concluded;
  });
  assert.equal(graph.getNode("cor0"), undefined);
  assert.equal(top.backing, base.node);
  assert.equal(top.image.backingFile, "/images/base.raw");
  assert.equal(
    top.image.header.features,
    QED_F_BACKING_FILE | QED_F_BACKING_FORMAT_NO_PROBE,
  );
  // mid's data is in top now; base's data is not.
  const st = await top.blockStatus(MiB, MiB);
  assert.equal(st.kind, "data");
  assert.equal((await top.blockStatus(0, MiB)).kind, "unallocated");
  assert.equal(firstDiff(await readAll(new BlockDevice(top)), before), -1);
});

Deno.test("startStream() with bottom and a custom backing-file string stores it verbatim", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const base = templateNode(new Uint8Array(MiB).fill(1), "base", "/images/base.raw");
  const mid = await memOverlay(base.node, { nodeName: "mid" });
  await mid.write(0, new Uint8Array(4096).fill(2));
  const top = await memOverlay(mid, { nodeName: "top" });
  const job = startStream(jobs, top, {
    jobId: "j",
    baseNode: base.node,
    backingFile: "custom-string-not-validated.raw",
  });
  await job.concluded;
  assert.equal(top.image.backingFile, "custom-string-not-validated.raw");
  const job2 = startStream(jobs, top, { jobId: "j2", bottom: base.node });
  await job2.concluded;
  assert.equal(top.backing, null);
  assert.equal(top.image.header.features, 0n);
});

Deno.test("startStream() stops early past the end of a shorter backing file, as qemu", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const base = templateNode(new Uint8Array(100000).fill(0xaa));
  const top = await memOverlay(base.node, { size: 8 * MiB, clusterSize: 65536 });
  const { full } = recorder(jobs);
  const job = startStream(jobs, top, { jobId: "j" });
  await job.concluded;
  // qemu 7.2: clusters 0..1 copied, the rest left unallocated, offset == len.
  const map = await top.image.map();
  assert.deepEqual(map.map((e) => [e.kind, e.offset, e.length]), [
    ["data", 0, 131072],
    ["unallocated", 131072, 8 * MiB - 131072],
  ]);
  assert.equal(
    (full.find((e) => e.event === "BLOCK_JOB_COMPLETED")!.data as { offset: number }).offset,
    8 * MiB,
  );
});

Deno.test("startStream() with parallel chunks gives the same image", async () => {
  for (const parallel of [2, 8, 32]) {
    const jobs = new JobRegistry({ clock: new VirtualClock() });
    const { top, expected } = await standard(8 * MiB, 4096);
    const job = startStream(jobs, top, { jobId: "j", parallel, chunkSize: 64 * KiB });
    await job.concluded;
    assert.equal(job.currentProgress, 8 * MiB);
    assert.equal(top.backing, null);
    top.image.backing = null;
    assert.equal(firstDiff(await readAll(top), expected), -1, `parallel ${parallel}`);
    const check = await top.image.check();
    assert.equal(check.corruptions + check.leaks, 0);
  }
});

Deno.test("raising the speed mid-sleep matches qemu-storage-daemon 7.2's observed progress", async () => {
  // Observed (1 MiB/s, then 4 MiB/s at 1.3 s): 1.5 MiB at 1.1 s; 2.5 MiB 50 ms after the raise,
  // then +2 MiB per half second.
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const template = templateNode(new Uint8Array(16 * MiB).fill(0xaa));
  const top = await memOverlay(template.node, { clusterSize: 65536 });
  const seen: number[] = [];
  await clock.run(async () => {
    const job = startStream(jobs, top, { jobId: "j", speed: MiB, parallel: 1 });
    await clock.sleep(1100);
    seen.push(job.currentProgress);
    await clock.sleep(200);
    job.setSpeed(4 * MiB);
    for (const t of [1350, 1850, 2350]) {
      await clock.sleep(t - clock.now());
      seen.push(job.currentProgress);
    }
    job.cancel();
    await job.concluded;
  });
  assert.deepEqual(seen, [1572864, 2621440, 4718592, 6815744]);
});

Deno.test("a stream on the system clock lets the event loop run between chunks, as qemu's main loop does", async () => {
  // Every copy completes at once from memory: without a real yield, a timer (or a monitor
  // command) would wait until the whole stream was done.
  const jobs = new JobRegistry();
  const { top, expected } = await standard(16 * MiB);
  let ticks = 0;
  let ticking = true;
  const tick = () => {
    ticks++;
    if (ticking) setTimeout(tick, 0);
  };
  setTimeout(tick, 0);
  const job = startStream(jobs, top, { jobId: "job0", parallel: 1 });
  const progressAtFirstTick = await new Promise<number>((resolve) =>
    setTimeout(() => resolve(job.info().offset), 0)
  );
  await job.concluded;
  ticking = false;
  assert.equal(job.error, undefined);
  assert.ok(
    progressAtFirstTick < 16 * MiB,
    `a timer ran only after the stream (${progressAtFirstTick})`,
  );
  assert.ok(ticks > 0);
  assert.equal(firstDiff(await readAll(top), expected), -1);
});
