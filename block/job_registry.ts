/**
 * The set of jobs of one daemon, with qemu's job id rules and one event
 * stream.
 *
 * Ids are `^[A-Za-z][A-Za-z0-9._-]*$` and unique among existing jobs,
 * including concluded ones not yet dismissed (`qmp-streaming.md` §2.3). The
 * query lists are newest first, as qemu inserts jobs at the head.
 *
 * @module
 */

import { type Clock, systemClock } from "../io/clock.ts";
import { JobError } from "./error.ts";
import type { BlockJobInfo, Job, JobEvent, JobInfo, JobListener } from "./job.ts";

const WELL_FORMED_ID = /^[A-Za-z][A-Za-z0-9._-]*$/;

/** Whether `id` is a well-formed qemu id (`id_wellformed`). */
export function isWellFormedId(id: string): boolean {
  return WELL_FORMED_ID.test(id);
}

/** Options of {@linkcode JobRegistry}. */
export interface JobRegistryOptions {
  /** The clock jobs sleep on. Default: the system clock. */
  clock?: Clock;
  /** Jobs held at once, concluded ones not yet dismissed included. Default {@linkcode MAX_JOBS}. */
  maxJobs?: number;
}

/**
 * The default bound on the jobs a registry holds. qemu has none (it trusts its
 * monitor); we bound it on purpose, because a concluded job with
 * `auto-dismiss: false` stays until dismissed, so a client that never
 * dismisses would otherwise grow the registry without end (issue 8).
 */
export const MAX_JOBS = 1024;

/**
 * Every live job, by id, and the listeners of their events.
 *
 * @example
 * ```ts
 * import { JobRegistry } from "./job_registry.ts";
 * const jobs = new JobRegistry();
 * const off = jobs.on((event) => console.log(event.event, event.data));
 * console.log(jobs.queryJobs()); // []
 * off();
 * ```
 */
export class JobRegistry {
  /** The clock jobs of this registry sleep on. */
  readonly clock: Clock;
  #jobs: Job[] = [];
  #listeners = new Set<JobListener>();
  readonly #maxJobs: number;

  /** Makes an empty registry. */
  constructor(options: JobRegistryOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.#maxJobs = options.maxJobs ?? MAX_JOBS;
  }

  /** Adds a listener of every job event; returns a function that removes it. */
  on(listener: JobListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Throws qemu's error if `id` cannot name a new job: `Invalid job ID '…'` or
   * `Job ID '…' already in use`; or ours when the registry is full.
   */
  checkNewId(id: string): void {
    if (!isWellFormedId(id)) throw new JobError("JOB_INVALID_ID", `Invalid job ID '${id}'`);
    if (this.get(id)) throw new JobError("JOB_ID_IN_USE", `Job ID '${id}' already in use`);
    if (this.#jobs.length >= this.#maxJobs) {
      throw new JobError(
        "TOO_MANY_JOBS",
        `Too many jobs (at most ${this.#maxJobs}); dismiss concluded jobs with job-dismiss`,
      );
    }
  }

  /** The job with this id, or `undefined`. */
  get(id: string): Job | undefined {
    return this.#jobs.find((j) => j.id === id);
  }

  /** The job with this id, or `Job not found` (the `job-*` commands' text, class GenericError). */
  find(id: string): Job {
    const job = this.get(id);
    if (!job) throw new JobError("JOB_NOT_FOUND", "Job not found");
    return job;
  }

  /** The job with this id, or `Block job '…' not found` (the `block-job-*` commands' text, class DeviceNotActive). */
  findBlockJob(id: string): Job {
    const job = this.get(id);
    if (!job) throw new JobError("BLOCK_JOB_NOT_FOUND", `Block job '${id}' not found`);
    return job;
  }

  /** Every live job, newest first. */
  list(): Job[] {
    return [...this.#jobs];
  }

  /** `query-block-jobs`. */
  queryBlockJobs(): BlockJobInfo[] {
    return this.#jobs.map((j) => j.info());
  }

  /** `query-jobs`. */
  queryJobs(): JobInfo[] {
    return this.#jobs.map((j) => j.jobInfo());
  }

  /** Called by a {@linkcode Job} when it is created. */
  attach(job: Job): void {
    this.checkNewId(job.id);
    this.#jobs.unshift(job);
  }

  /** Called by a {@linkcode Job} when it reaches `null`. */
  detach(job: Job): void {
    this.#jobs = this.#jobs.filter((j) => j !== job);
  }

  /**
   * Called by a {@linkcode Job} for each of its events. A listener that throws
   * does not disturb the job: its error is rethrown on its own afterwards.
   */
  emit(event: JobEvent, job: Job): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(event, job);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
