/**
 * The job commands of qemu 7.2: `query-block-jobs`, `query-jobs`, the
 * `block-job-*` verbs (job id in `device`, or `id` for dismiss/finalize;
 * `DeviceNotActive` when missing) and the `job-*` verbs (`GenericError`
 * `Job not found`).
 *
 * Reply order as qemu-storage-daemon writes it: a pause of a parked job
 * emits `paused` before the return (a busy job pauses at its next pause
 * point, after the return); a cancel of a parked job emits `aborting` …
 * `null` before the return; a finalize's `BLOCK_JOB_COMPLETED` … precede
 * its return.
 *
 * @module
 */

import type { Job } from "../block/job.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import { withQmpErrors } from "./block_error_map.ts";
import { jobSettled } from "./_job_waits.ts";
import type { QmpServer } from "./server.ts";

/**
 * Cancels. A parked job (sleeping or paused) ends before the reply, as in
 * qemu, where the cancel enters it at once; a busy one first finishes its
 * chunk, and qemu answers before its events, so no wait then.
 */
async function cancel(jobs: JobRegistry, job: Job, force: boolean): Promise<void> {
  const busy = job.busy;
  job.cancel({ force });
  if (!busy) await jobSettled(jobs, job);
}

/**
 * Wires the job commands to `jobs`.
 *
 * @example
 * ```ts
 * import { JobRegistry } from "../block/job_registry.ts";
 * import { QmpServer } from "./server.ts";
 * import { registerJobCommands } from "./job_commands.ts";
 * const server = new QmpServer();
 * registerJobCommands(server, new JobRegistry());
 * console.log(server.commands.find("job-cancel") !== undefined); // true
 * ```
 */
export function registerJobCommands(server: QmpServer, jobs: JobRegistry): void {
  const blockJob = (id: string) => jobs.findBlockJob(id);
  const job = (id: string) => jobs.find(id);
  const on = server.commands;

  on.handle("query-block-jobs", () => jobs.queryBlockJobs());
  on.handle("query-jobs", () => jobs.queryJobs());

  on.handle<{ device: string; speed: number }>(
    "block-job-set-speed",
    withQmpErrors((a) => void blockJob(a.device).setSpeed(a.speed)),
  );
  on.handle<{ device: string; force: boolean }>(
    "block-job-cancel",
    withQmpErrors((a) => cancel(jobs, blockJob(a.device), a.force)),
  );
  on.handle<{ device: string }>(
    "block-job-pause",
    withQmpErrors((a) => void blockJob(a.device).pause()),
  );
  on.handle<{ device: string }>(
    "block-job-resume",
    withQmpErrors((a) => void blockJob(a.device).resume()),
  );
  on.handle<{ device: string }>(
    "block-job-complete",
    withQmpErrors((a) => void blockJob(a.device).complete()),
  );
  on.handle<{ id: string }>(
    "block-job-dismiss",
    withQmpErrors((a) => void blockJob(a.id).dismiss()),
  );
  on.handle<{ id: string }>(
    "block-job-finalize",
    withQmpErrors((a) => blockJob(a.id).finalize()),
  );

  on.handle<{ id: string }>(
    "job-pause",
    withQmpErrors((a) => void job(a.id).pause()),
  );
  on.handle<{ id: string }>("job-resume", withQmpErrors((a) => void job(a.id).resume()));
  // job-cancel always forces (qemu 3.0+).
  on.handle<{ id: string }>("job-cancel", withQmpErrors((a) => cancel(jobs, job(a.id), true)));
  on.handle<{ id: string }>("job-complete", withQmpErrors((a) => void job(a.id).complete()));
  on.handle<{ id: string }>("job-dismiss", withQmpErrors((a) => void job(a.id).dismiss()));
  on.handle<{ id: string }>("job-finalize", withQmpErrors((a) => job(a.id).finalize()));
}
