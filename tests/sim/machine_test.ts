import assert from "node:assert/strict";
import { JobRegistry } from "../../block/job_registry.ts";
import { startStream } from "../../block/stream_job.ts";
import { LocalDisk } from "../../sim/local_disk.ts";
import { Machine, type MachineOptions, type MachineRun } from "../../sim/machine.ts";
import { type RemoteFaults, RemoteTemplate } from "../../sim/remote_template.ts";
import { SparseTemplate } from "../../sim/sparse_template.ts";
import { verifyImage } from "../../sim/verify.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";

const MIB = 1024 * 1024;

interface Setup {
  clock: VirtualClock;
  template: SparseTemplate;
  repo: RemoteTemplate;
  jobs: JobRegistry;
  events: { event: string; action?: string }[];
}

function setup(faults: RemoteFaults): Setup {
  const clock = new VirtualClock();
  const template = new SparseTemplate({
    size: 128 * MIB,
    bootRegionLength: 4 * MIB,
    dataFraction: 0.3,
    seed: 5,
  });
  const repo = new RemoteTemplate(template, { clock, faults, trackGranularity: 4096 });
  const jobs = new JobRegistry({ clock });
  const events: Setup["events"] = [];
  jobs.on((e) => {
    events.push(
      e.event === "BLOCK_JOB_ERROR"
        ? { event: e.event, action: e.data.action }
        : { event: e.event },
    );
  });
  return { clock, template, repo, jobs, events };
}

function machine(s: Setup, extra: Partial<MachineOptions> = {}): Machine {
  return new Machine({
    name: "vm",
    mode: "stream",
    clock: s.clock,
    template: s.template,
    remote: s.repo.connect("vm"),
    storage: new LocalDisk({ clock: s.clock }),
    jobs: s.jobs,
    guest: { seed: 2, boot: { regionLength: 2 * MIB, files: 10 }, steady: { durationMs: 1500 } },
    ...extra,
  });
}

/** Verification reads the local disk, which takes time on the virtual clock. */
function verify(s: Setup, ...args: Parameters<typeof verifyImage>) {
  return s.clock.run(() => verifyImage(...args));
}

async function restreamWithoutFaults(s: Setup, run: MachineRun): Promise<void> {
  s.repo.setFaults({});
  await s.clock.run(async () => {
    const job = startStream(s.jobs, run.device, { jobId: "again" });
    await job.concluded;
    assert.equal(job.error, undefined);
  });
  assert.equal(run.top.backing, null);
}

Deno.test("stream with on-error=stop pauses on remote errors, is resumed, and completes intact", async () => {
  const s = setup({ errorRate: 0.05, seed: 3 });
  const run = await s.clock.run(() =>
    machine(s, { stream: { onError: "stop", parallel: 4, resumeAfterMs: 100 } }).run()
  );
  assert.ok(run.streamErrors > 0, "some chunks failed");
  assert.ok(s.events.some((e) => e.action === "stop"));
  assert.ok(s.events.every((e) => e.action !== "report"));
  assert.equal(run.streamError, undefined);
  assert.notEqual(run.independentAt, null);
  const v = await verify(s, run.image, s.template, run.guestModel);
  assert.ok(v.ok, v.problems.join("; "));
});

Deno.test("stream with on-error=report fails at an outage, keeps the backing, and loses nothing", async () => {
  const s = setup({ outages: [{ start: 100, end: 700 }] });
  const run = await s.clock.run(() => machine(s, { stream: { onError: "report" } }).run());
  assert.equal(run.streamError, "Input/output error");
  assert.equal(run.independentAt, null);
  assert.ok(s.events.some((e) => e.action === "report"));
  // The guest retried through the outage and every byte it read was right.
  assert.ok(run.guest.ioErrors > 0);
  assert.notEqual(run.top.backing, null);
  const partial = await verify(s, run.image, s.template, run.guestModel, {
    expectIndependent: false,
  });
  assert.ok(partial.checkClean);
  await restreamWithoutFaults(s, run);
  const v = await verify(s, run.image, s.template, run.guestModel);
  assert.ok(v.ok, v.problems.join("; "));
});

Deno.test("stream with on-error=ignore goes on past errors, ends failed, and a second stream completes", async () => {
  const s = setup({ errorRate: 0.1, seed: 8 });
  const run = await s.clock.run(() => machine(s, { stream: { onError: "ignore" } }).run());
  assert.ok(run.streamErrors > 1, "it went on after the first error");
  assert.ok(s.events.every((e) => e.action === undefined || e.action === "ignore"));
  assert.equal(run.streamError, "Input/output error");
  assert.equal(run.independentAt, null);
  await restreamWithoutFaults(s, run);
  const v = await verify(s, run.image, s.template, run.guestModel);
  assert.ok(v.ok, v.problems.join("; "));
  // Everything lost to an error was fetched again; far less than the whole template.
  const node = s.repo.clients.get("vm")!;
  assert.ok(node.counters.bytes < 1.5 * s.template.dataBytes);
});

Deno.test("the management loop streams one chunk at a time and ends independent", async () => {
  const s = setup({ errorRate: 0.02, seed: 4 });
  const run = await s.clock.run(() =>
    machine(s, { mode: "managed", managed: { pauseMs: 5, startAfterBoot: true } }).run()
  );
  assert.equal(run.streamError, undefined);
  assert.ok(run.fetchStartedAt! >= run.guest.bootDoneAt);
  assert.notEqual(run.independentAt, null);
  const v = await verify(s, run.image, s.template, run.guestModel);
  assert.ok(v.ok, v.problems.join("; "));
});
