import assert from "node:assert/strict";
import { JobError } from "../../block/error.ts";
import { errorActionFor, Job, type JobType, type OnErrorPolicy } from "../../block/job.ts";
import { isWellFormedId, JobRegistry } from "../../block/job_registry.ts";
import {
  canTransition,
  checkVerb,
  JOB_STATUSES,
  JOB_TRANSITIONS,
  JOB_VERB_NAMES,
  JOB_VERBS,
  type JobStatus,
  type JobVerb,
  verbAllowed,
} from "../../block/job_status.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";

/** A job that sleeps in 100 ms steps until cancelled or `steps` are done. */
class SleepyJob extends Job {
  get type(): JobType {
    return "stream";
  }
  steps = 1000;
  fail: unknown = undefined;
  protected override async run(): Promise<void> {
    this.setTotalProgress(this.steps);
    for (let i = 0; i < this.steps; i++) {
      await this.sleep(100);
      if (this.cancelled) return;
      this.addProgress(1);
    }
    if (this.fail) throw this.fail;
  }
}

Deno.test("JOB_TRANSITIONS is qemu's table", () => {
  const rows: [JobStatus, JobStatus[]][] = [
    ["undefined", ["created"]],
    ["created", ["running", "aborting", "null"]],
    ["running", ["paused", "ready", "waiting", "aborting"]],
    ["paused", ["running"]],
    ["ready", ["standby", "waiting", "aborting"]],
    ["standby", ["ready"]],
    ["waiting", ["pending", "aborting"]],
    ["pending", ["aborting", "concluded"]],
    ["aborting", ["aborting", "concluded"]],
    ["concluded", ["null"]],
    ["null", []],
  ];
  for (const [from, tos] of rows) {
    for (const to of JOB_STATUSES) {
      assert.equal(canTransition(from, to), tos.includes(to), `${from} → ${to}`);
    }
  }
  assert.equal(Object.keys(JOB_TRANSITIONS).length, JOB_STATUSES.length);
});

Deno.test("checkVerb() accepts exactly the verb table and refuses with qemu's text", () => {
  const table: Record<JobVerb, JobStatus[]> = {
    cancel: ["created", "running", "paused", "ready", "standby", "waiting", "pending"],
    pause: ["created", "running", "paused", "ready", "standby"],
    resume: ["created", "running", "paused", "ready", "standby"],
    "set-speed": ["created", "running", "paused", "ready", "standby"],
    complete: ["ready", "standby"],
    finalize: ["pending"],
    dismiss: ["concluded"],
    change: ["created", "running", "paused", "ready", "standby"],
  };
  for (const verb of JOB_VERB_NAMES) {
    assert.deepEqual([...JOB_VERBS[verb]], table[verb]);
    for (const status of JOB_STATUSES) {
      if (table[verb].includes(status)) {
        assert.equal(verbAllowed(verb, status), true);
        checkVerb("job0", status, verb);
      } else {
        assert.throws(() => checkVerb("job0", status, verb), (e: unknown) => {
          assert.ok(e instanceof JobError);
          assert.equal(e.code, "JOB_VERB_REFUSED");
          assert.equal(
            e.message,
            `Job 'job0' in state '${status}' cannot accept command verb '${verb}'`,
          );
          return true;
        });
      }
    }
  }
});

Deno.test("job ids follow qemu's rules", () => {
  for (const ok of ["a", "a-b.c_d9", "Job0"]) assert.ok(isWellFormedId(ok), ok);
  for (const bad of ["", "a b", "1bad", "-a", "a/b", "é"]) assert.ok(!isWellFormedId(bad), bad);
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  assert.throws(() => new SleepyJob(jobs, { id: "a b" }), { message: "Invalid job ID 'a b'" });
  const j = new SleepyJob(jobs, { id: "x" });
  assert.throws(() => new SleepyJob(jobs, { id: "x" }), { message: "Job ID 'x' already in use" });
  j.cancel();
});

Deno.test("the on-error policies map errors to qemu's actions", () => {
  const cases: [OnErrorPolicy, "EIO" | "ENOSPC", string][] = [
    ["report", "EIO", "report"],
    ["report", "ENOSPC", "report"],
    ["ignore", "EIO", "ignore"],
    ["stop", "EIO", "stop"],
    ["stop", "ENOSPC", "stop"],
    ["enospc", "ENOSPC", "stop"],
    ["enospc", "EIO", "report"],
    ["auto", "ENOSPC", "stop"],
    ["auto", "EIO", "report"],
  ];
  for (const [policy, kind, action] of cases) assert.equal(errorActionFor(policy, kind), action);
});

type Reach = { job: SleepyJob; jobs: JobRegistry; clock: VirtualClock; done: () => Promise<void> };

/** Brings a fresh job to `status` and returns it, with a way to end it. */
async function reach(status: JobStatus): Promise<Reach | undefined> {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const job = new SleepyJob(jobs, {
    id: "job0",
    autoFinalize: status !== "pending",
    autoDismiss: status !== "concluded",
  });
  const finish = async () => {
    for (let i = 0; i < 50 && job.status !== "null"; i++) {
      try {
        if (job.status === "concluded") job.dismiss();
        else if (job.status === "pending") await job.finalize();
        else {
          if (job.userPaused) job.resume();
          job.cancel({ force: true });
        }
      } catch { /* the job moves on by itself */ }
      await clock.advance(1000);
    }
    assert.equal(job.status, "null");
  };
  const r = { job, jobs, clock, done: finish };
  switch (status) {
    case "created":
      return r;
    case "running":
      job.start();
      await clock.advance(50);
      return r;
    case "paused":
      job.start();
      await clock.advance(50);
      job.pause();
      return r;
    case "pending":
    case "concluded":
      job.steps = 2;
      job.start();
      await clock.advance(1000);
      assert.equal(job.status, status);
      return r;
    case "null":
      job.steps = 1;
      job.start();
      await clock.advance(1000);
      return r;
    default:
      return undefined; // ready, standby: no such job yet; waiting, aborting: transient
  }
}

Deno.test("every verb in every reachable status is accepted or refused as the table says", async () => {
  for (const status of JOB_STATUSES) {
    for (const verb of JOB_VERB_NAMES) {
      if (verb === "change") continue; // 8.2+, no method
      const r = await reach(status);
      if (!r) continue;
      const { job, jobs } = r;
      const seen: [JobStatus, JobStatus][] = [];
      let last = job.status;
      jobs.on((e) => {
        if (e.event === "JOB_STATUS_CHANGE") {
          seen.push([last, e.data.status]);
          last = e.data.status;
        }
      });
      assert.equal(job.status, status);
      let error: unknown;
      try {
        if (verb === "cancel") job.cancel({ force: true });
        else if (verb === "pause") job.pause();
        else if (verb === "resume") job.resume();
        else if (verb === "set-speed") job.setSpeed(1000);
        else if (verb === "complete") job.complete();
        else if (verb === "finalize") await job.finalize();
        else if (verb === "dismiss") job.dismiss();
      } catch (e) {
        error = e;
      }
      const refusal = `Job 'job0' in state '${status}' cannot accept command verb '${verb}'`;
      const allowed = verbAllowed(verb, status);
      const message = error instanceof Error ? error.message : undefined;
      if (verb === "resume" && !job.userPaused && status !== "paused") {
        // qemu checks "not paused" before the verb table.
        assert.equal(message, "Can't resume a job that was not paused");
      } else if (!allowed) {
        assert.equal(message, refusal, `${verb} in ${status}`);
      } else {
        // Accepted by the table; only the verb's own checks may refuse.
        assert.notEqual(message, refusal);
        if (verb === "complete") {
          assert.equal(message, "The active block job 'job0' cannot be completed");
        } else if (verb === "resume" && status !== "paused") {
          assert.equal(message, "Can't resume a job that was not paused");
        } else if (verb === "pause" && status === "paused") {
          assert.equal(message, "Job is already paused");
        } else {
          assert.equal(error, undefined, `${verb} in ${status}: ${message}`);
        }
      }
      if (job.status !== "null") await r.done();
      for (const [from, to] of seen) assert.ok(canTransition(from, to), `${from} → ${to}`);
    }
  }
});

Deno.test("a job cancelled before it starts goes created → aborting → concluded → null without end events", async () => {
  const jobs = new JobRegistry({ clock: new VirtualClock() });
  const events: string[] = [];
  jobs.on((e) => events.push(e.event === "JOB_STATUS_CHANGE" ? e.data.status : e.event));
  const job = new SleepyJob(jobs, { id: "j" });
  job.cancel();
  await job.concluded;
  assert.deepEqual(events, ["created", "aborting", "concluded", "null"]);
});

Deno.test("a failed job reports the C library's text; a cancelled one 'Operation canceled'", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const failing = new SleepyJob(jobs, { id: "f", autoDismiss: false });
  failing.steps = 1;
  failing.fail = Object.assign(new Error("x"), { code: "ENOSPC" });
  failing.start();
  const cancelled = new SleepyJob(jobs, { id: "c", autoDismiss: false });
  cancelled.start();
  await clock.advance(150);
  cancelled.cancel();
  await clock.advance(1000);
  assert.equal(failing.info().error, "No space left on device");
  assert.equal(cancelled.info().error, "Operation canceled");
  assert.deepEqual(jobs.queryJobs().map((j) => j.id), ["c", "f"], "newest first");
  assert.equal(cancelled.info().offset, 1);
});

Deno.test("a job paused while created pauses at its first pause point", async () => {
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  const job = new SleepyJob(jobs, { id: "j" });
  job.pause(); // while created: qemu lets it start and pause at its first pause point
  job.start(); // running, then paused at the first pause point
  assert.equal(job.status, "paused");
  await clock.advance(10);
  assert.equal(job.status, "paused");
  assert.equal(job.currentProgress, 0);
  job.resume();
  assert.equal(job.status, "running");
  await clock.advance(250);
  assert.equal(job.currentProgress, 3, "the interrupted sleep is not slept again");
  job.cancel();
  await clock.advance(0);
  await job.concluded;
});
