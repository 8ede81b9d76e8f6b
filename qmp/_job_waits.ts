/**
 * Waiting for a job to reach a state, so that a command's reply follows the
 * job events qemu-storage-daemon writes before it.
 *
 * @module
 */

import type { Job } from "../block/job.ts";
import type { JobRegistry } from "../block/job_registry.ts";

/** Resolves once `done()` holds, checked now and after each event of `job`. */
function until(jobs: JobRegistry, job: Job, done: () => boolean): Promise<void> {
  if (done()) return Promise.resolve();
  return new Promise((resolve) => {
    const off = jobs.on((_event, j) => {
      if (j === job && done()) {
        off();
        resolve();
      }
    });
  });
}

/**
 * Resolves once `job` has settled: concluded or gone, or waiting in
 * `pending` for `job-finalize`.
 */
export function jobSettled(jobs: JobRegistry, job: Job): Promise<void> {
  return until(
    jobs,
    job,
    () =>
      job.status === "concluded" || job.status === "null" ||
      (job.status === "pending" && !job.autoFinalize),
  );
}
