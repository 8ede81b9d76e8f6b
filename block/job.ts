/**
 * qemu's job core (`job.c`, `blockjob.c`) without any protocol.
 *
 * A {@linkcode Job} moves through the statuses of {@linkcode JOB_TRANSITIONS}
 * and accepts the verbs of {@linkcode JOB_VERBS}; every transition emits
 * `JOB_STATUS_CHANGE`, and the block-job events (`BLOCK_JOB_COMPLETED`,
 * `_CANCELLED`, `_ERROR`, `_PENDING`, `_READY`) carry the data qemu puts in
 * them, members in the order qemu-storage-daemon 7.2 prints them. The QMP
 * layer only adds timestamps and serialises.
 *
 * Lifecycle (single-job transaction, as for `block-stream`):
 *
 * ```
 * created ─start→ running ⇄ paused
 *   running ─success→ waiting → pending ─(auto-)finalize→ prepare → concluded ─(auto-)dismiss→ null
 *   running ─error/cancel→ aborting → concluded → null
 * ```
 *
 * A job driver (the stream job) subclasses {@linkcode Job} and implements
 * `run()`, calling `sleep()` / `pausePoint()` at every chunk and
 * `errorAction()` on an I/O error.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { IO_ERROR_TEXT, type IoErrorKind, ioErrorKind, JobError } from "./error.ts";
import { canTransition, checkVerb, type JobStatus } from "./job_status.ts";
import type { JobRegistry } from "./job_registry.ts";
import { RateLimit } from "./rate_limit.ts";

/** qemu's `JobType` (7.2). */
export type JobType =
  | "commit"
  | "stream"
  | "mirror"
  | "backup"
  | "create"
  | "amend"
  | "snapshot-load"
  | "snapshot-save"
  | "snapshot-delete";

/** qemu's `BlockdevOnError`. */
export type OnErrorPolicy = "report" | "ignore" | "enospc" | "stop" | "auto";

/** The options every block job takes, named after qemu's common job arguments. */
export interface BlockJobOptions {
  /** The job id. Default: the device name (`""` for a bare node ⇒ `Invalid job ID ''`, as in qemu-storage-daemon). */
  jobId?: string;
  /** Bytes per second; 0 = unlimited. Default 0. */
  speed?: number;
  /** Error policy. Default `report`. */
  onError?: OnErrorPolicy;
  /** Default true. */
  autoFinalize?: boolean;
  /** Default true. */
  autoDismiss?: boolean;
}

/** The action an `on-error` policy takes for one error (`BlockErrorAction`). */
export type ErrorAction = "ignore" | "report" | "stop";

/** qemu's `BlockDeviceIoStatus`. */
export type IoStatus = "ok" | "failed" | "nospace";

/** The data of `BLOCK_JOB_COMPLETED` / `_CANCELLED` / `_READY`, in qemu's member order. */
export interface BlockJobEndData {
  /** The job id (historic name). */
  device: string;
  /** Total progress. */
  len: number;
  /** Current progress. */
  offset: number;
  /** Speed in bytes per second. */
  speed: number;
  /** The job type. */
  type: JobType;
  /** Only on `BLOCK_JOB_COMPLETED` of a failed job: the error text. */
  error?: string;
}

/** A job event, with the data qemu sends. */
export type JobEvent =
  | { event: "JOB_STATUS_CHANGE"; data: { status: JobStatus; id: string } }
  | { event: "BLOCK_JOB_COMPLETED"; data: BlockJobEndData }
  | { event: "BLOCK_JOB_CANCELLED"; data: BlockJobEndData }
  | { event: "BLOCK_JOB_READY"; data: BlockJobEndData }
  | {
    event: "BLOCK_JOB_ERROR";
    data: { device: string; operation: "read" | "write"; action: ErrorAction };
  }
  | { event: "BLOCK_JOB_PENDING"; data: { type: JobType; id: string } };

/** Receives every event of every job of a registry, synchronously, in order. */
export type JobListener = (event: JobEvent, job: Job) => void;

/** An entry of `query-block-jobs` (`BlockJobInfo`, 7.2), members in qemu's order. */
export interface BlockJobInfo {
  /** Whether the job finalizes by itself. */
  "auto-finalize": boolean;
  /** `ok`, or why the stop policy paused the job. */
  "io-status": IoStatus;
  /** The job id (historic name). */
  device: string;
  /** Whether the job is dismissed by itself. */
  "auto-dismiss": boolean;
  /** False while sleeping or paused. */
  busy: boolean;
  /** Total progress. */
  len: number;
  /** Current progress. */
  offset: number;
  /** The status. */
  status: JobStatus;
  /** Pause count above zero. */
  paused: boolean;
  /** Bytes per second, 0 = unlimited. */
  speed: number;
  /** Whether the job is ready (never for stream). */
  ready: boolean;
  /** The job type. */
  type: JobType;
  /** Present iff the job failed or was cancelled. */
  error?: string;
}

/** An entry of `query-jobs` (`JobInfo`), members in qemu's order. */
export interface JobInfo {
  /** Current progress. */
  "current-progress": number;
  /** The status. */
  status: JobStatus;
  /** Total progress. */
  "total-progress": number;
  /** The job type. */
  type: JobType;
  /** The job id. */
  id: string;
  /** Present iff the job failed or was cancelled. */
  error?: string;
}

/** Options common to every job. */
export interface JobOptions {
  /** The job id; checked by the registry (`^[A-Za-z][A-Za-z0-9._-]*$`, unique). */
  id: string;
  /** Wait in `pending` for {@linkcode Job.finalize} when false. Default true. */
  autoFinalize?: boolean;
  /** Stay in `concluded` until {@linkcode Job.dismiss} when false. Default true. */
  autoDismiss?: boolean;
  /** The clock for rate-limit sleeps. Default: the registry's. */
  clock?: Clock;
}

/** Maps a policy and an error kind to an action, as qemu's `block_job_error_action`. */
export function errorActionFor(policy: OnErrorPolicy, kind: IoErrorKind): ErrorAction {
  switch (policy) {
    case "enospc":
    case "auto":
      return kind === "ENOSPC" ? "stop" : "report";
    case "stop":
      return "stop";
    case "ignore":
      return "ignore";
    case "report":
      return "report";
  }
}

/**
 * A job of qemu's job core, with the block-job extras (speed, io-status).
 * Subclasses implement {@linkcode Job.run} and may override the finalization
 * hooks.
 */
export abstract class Job {
  /** The job id. */
  readonly id: string;
  /** The job type. */
  abstract readonly type: JobType;
  /** Whether the job waits in `pending` for {@linkcode Job.finalize}. */
  readonly autoFinalize: boolean;
  /** Whether the job stays in `concluded` until {@linkcode Job.dismiss}. */
  readonly autoDismiss: boolean;
  /** The clock the job sleeps on. */
  readonly clock: Clock;
  /** Resolves when the job reaches `concluded` (never rejects; see {@linkcode Job.error}). */
  readonly concluded: Promise<void>;

  readonly #registry: JobRegistry;
  readonly #limit: RateLimit;
  #status: JobStatus = "undefined";
  // qemu creates jobs with a pause count of 1 that job_start drops.
  #pauseCount = 1;
  #userPaused = false;
  #busy = false;
  #sleeping = false;
  #wake: (() => void) | null = null;
  #cancelled = false;
  #started = false;
  #deferred = false;
  #finalizing = false;
  #finalized: Promise<void> | undefined;
  #speed = 0;
  #ioStatus: IoStatus = "ok";
  #current = 0;
  #total = 0;
  #error: string | undefined;
  #concludedResolve!: () => void;

  /** Creates the job in `created` (emits the event); throws on a bad or duplicate id. */
  constructor(registry: JobRegistry, options: JobOptions) {
    registry.checkNewId(options.id);
    this.id = options.id;
    this.autoFinalize = options.autoFinalize ?? true;
    this.autoDismiss = options.autoDismiss ?? true;
    this.clock = options.clock ?? registry.clock;
    this.#registry = registry;
    this.#limit = new RateLimit(this.clock);
    this.concluded = new Promise((resolve) => this.#concludedResolve = resolve);
    registry.attach(this);
    this.#transition("created");
  }

  // ---- state --------------------------------------------------------------

  /** The current status. */
  get status(): JobStatus {
    return this.#status;
  }
  /** Whether the job is working (false while sleeping, paused, or finished). */
  get busy(): boolean {
    return this.#busy;
  }
  /** Whether the pause count is above zero (qemu's `paused` in `BlockJobInfo`). */
  get paused(): boolean {
    return this.#pauseCount > 0;
  }
  /** Whether the user (or the `stop` policy) paused the job. */
  get userPaused(): boolean {
    return this.#userPaused;
  }
  /** Whether a cancel was requested. */
  get cancelled(): boolean {
    return this.#cancelled;
  }
  /** The speed limit in bytes per second (0 = unlimited). */
  get speed(): number {
    return this.#speed;
  }
  /** The io-status of the stop policy. */
  get ioStatus(): IoStatus {
    return this.#ioStatus;
  }
  /** Bytes processed so far (`offset`, `current-progress`). */
  get currentProgress(): number {
    return this.#current;
  }
  /** Total bytes to process (`len`, `total-progress`). */
  get totalProgress(): number {
    return this.#total;
  }
  /** The error text once the job failed or was cancelled (`error` in the query commands). */
  get error(): string | undefined {
    return this.#error;
  }

  /** The `query-block-jobs` entry. */
  info(): BlockJobInfo {
    const info: BlockJobInfo = {
      "auto-finalize": this.autoFinalize,
      "io-status": this.#ioStatus,
      device: this.id,
      "auto-dismiss": this.autoDismiss,
      busy: this.#busy,
      len: this.#total,
      offset: this.#current,
      status: this.#status,
      paused: this.#pauseCount > 0,
      speed: this.#speed,
      ready: this.#status === "ready" || this.#status === "standby",
      type: this.type,
    };
    if (this.#error !== undefined) info.error = this.#error;
    return info;
  }

  /** The `query-jobs` entry. */
  jobInfo(): JobInfo {
    const info: JobInfo = {
      "current-progress": this.#current,
      status: this.#status,
      "total-progress": this.#total,
      type: this.type,
      id: this.id,
    };
    if (this.#error !== undefined) info.error = this.#error;
    return info;
  }

  // ---- verbs ----------------------------------------------------------------

  /** Starts the job: `created → running`, then runs {@linkcode Job.run} in the background. */
  start(): void {
    if (this.#status !== "created" || this.#started) {
      throw new JobError("JOB_ALREADY_STARTED", `Job '${this.id}' has already been started`);
    }
    this.#started = true;
    this.#pauseCount--;
    this.#busy = true;
    this.#transition("running");
    void this.#main();
  }

  /**
   * Removes a job that never started (`created → null`), as qemu does when
   * setup fails after creation (e.g. a negative initial speed).
   */
  earlyFail(): void {
    if (this.#status !== "created" || this.#started) return;
    this.#transition("null");
    this.#registry.detach(this);
    this.#concludedResolve();
  }

  /** User pause (`block-job-pause`, `job-pause`). */
  pause(): void {
    checkVerb(this.id, this.#status, "pause");
    if (this.#userPaused) throw new JobError("JOB_ALREADY_PAUSED", "Job is already paused");
    this.#userPaused = true;
    this.#pause();
  }

  /** User resume (`block-job-resume`, `job-resume`); also resets the io-status. */
  resume(): void {
    if (!this.#userPaused || this.#pauseCount <= 0) {
      throw new JobError("JOB_NOT_PAUSED", "Can't resume a job that was not paused");
    }
    checkVerb(this.id, this.#status, "resume");
    this.#ioStatus = "ok";
    this.#userPaused = false;
    this.#resume();
  }

  /**
   * Cancel. Without `force`, a user-paused job refuses with qemu's
   * `block-job-cancel` text; `job-cancel` passes `force: true`, which resumes
   * a paused job first (events `running`, then `aborting`).
   */
  cancel(options: { force?: boolean } = {}): void {
    if (this.#userPaused && !options.force) {
      throw new JobError(
        "JOB_PAUSED",
        `The block job for device '${this.id}' is currently paused`,
      );
    }
    checkVerb(this.id, this.#status, "cancel");
    // During prepare it is too late: qemu runs prepare atomically in its main loop.
    if (this.#finalizing) return;
    if (this.#userPaused) {
      this.#userPaused = false;
      this.#ioStatus = "ok";
      this.#pauseCount--;
    }
    this.#cancelled = true;
    if (!this.#started) {
      this.#complete(undefined);
    } else if (this.#deferred) {
      void this.#finalizeSingle(); // finished running: abort from pending
    } else {
      this.#enter(false);
    }
  }

  /** `block-job-set-speed`: verb check, then the sign, then the new quota; wakes a sleeping job on 0 or a raise. */
  setSpeed(speed: number): void {
    checkVerb(this.id, this.#status, "set-speed");
    this.#checkSpeed(speed);
    const old = this.#speed;
    this.#limit.setSpeed(speed);
    this.#speed = speed;
    if (speed !== 0 && speed <= old) return;
    this.#enter(true);
  }

  /** `job-complete`: refused for jobs without a completion step (stream). */
  complete(): void {
    checkVerb(this.id, this.#status, "complete");
    throw new JobError(
      "JOB_CANNOT_COMPLETE",
      `The active block job '${this.id}' cannot be completed`,
    );
  }

  /** `job-finalize`: runs the pending job's changes; resolves once it has concluded. */
  async finalize(): Promise<void> {
    checkVerb(this.id, this.#status, "finalize");
    await this.#doFinalize();
  }

  /** `job-dismiss`: removes a concluded job (`concluded → null`). */
  dismiss(): void {
    checkVerb(this.id, this.#status, "dismiss");
    this.#dismiss();
  }

  // ---- for job drivers ----------------------------------------------------

  /** The work of the job; throw to fail. Return early when {@linkcode Job.cancelled}. */
  protected abstract run(): Promise<void>;

  /** On success, before `concluded` (at finalize): make the job's changes; throw to fail the job. */
  protected prepare(): Promise<void> {
    return Promise.resolve();
  }

  /** After success or failure, before the end event: release what the job held. */
  protected clean(): void {}

  /** Sets the total progress (`len`). */
  protected setTotalProgress(total: number): void {
    this.#total = total;
  }

  /** Adds to the current progress (`offset`). */
  protected addProgress(bytes: number): void {
    this.#current += bytes;
  }

  /** Accounts `bytes` copied with the rate limit; returns the delay before the next copy, in ms. */
  protected rateDelay(bytes: number): number {
    return this.#speed === 0 ? 0 : this.#limit.delayFor(bytes);
  }

  /** Sets the initial speed during setup (no verb check; qemu's error for a negative value). */
  protected initSpeed(speed: number): void {
    this.#checkSpeed(speed);
    this.#limit.setSpeed(speed);
    this.#speed = speed;
  }

  /**
   * Sleeps `ms` (cut short by a cancel, a pause or a speed raise), then
   * stops at the pause point. Always yields, even for 0 ms, as qemu does.
   */
  protected async sleep(ms: number): Promise<void> {
    if (this.#cancelled) return;
    if (ms <= 0) {
      // A zero delay yields to the event loop (qemu's job_sleep_ns(0) goes through the main
      // loop too), so monitor commands, timers and finished I/O run between chunks even when
      // every copy completes at once from the page cache; the job stays busy.
      await (this.clock.yieldNow?.() ?? Promise.resolve());
    } else if (!this.#shouldPause()) {
      this.#busy = false;
      this.#sleeping = true;
      const stop = new AbortController();
      await new Promise<void>((resolve) => {
        this.#wake = () => {
          stop.abort();
          resolve();
        };
        this.clock.sleep(ms, stop.signal).then(resolve, () => {});
      });
      this.#wake = null;
      this.#sleeping = false;
      this.#busy = true;
    }
    await this.pausePoint();
  }

  /** Stops here while the job is paused (`running → paused → running`). */
  protected async pausePoint(): Promise<void> {
    if (this.#shouldPause()) {
      if (this.#status === "running") this.#transition("paused");
      else if (this.#status === "ready") this.#transition("standby");
      this.#busy = false;
      while (this.#shouldPause()) {
        await new Promise<void>((resolve) => this.#wake = resolve);
        this.#wake = null;
      }
      this.#busy = true;
    }
    if (this.#status === "paused") this.#transition("running");
    else if (this.#status === "standby") this.#transition("ready");
  }

  /**
   * Enters `ready` (`running → ready`) and emits `BLOCK_JOB_READY`, as
   * qemu's `job_transition_to_ready`: for jobs with a completion step
   * (an active commit), which then wait for {@linkcode Job.complete}.
   */
  protected setReady(): void {
    if (this.#status !== "running") return;
    this.#transition("ready");
    this.#emit({
      event: "BLOCK_JOB_READY",
      data: {
        device: this.id,
        len: this.#total,
        offset: this.#current,
        speed: this.#speed,
        type: this.type,
      },
    });
  }

  /** Re-enters the job if it is parked (sleeping, not paused), as qemu's `job_enter`. */
  protected wake(): void {
    this.#enter(false);
  }

  /**
   * Reports an I/O error as qemu's `block_job_error_action`: emits
   * `BLOCK_JOB_ERROR`, then for `stop` pauses the job (user-visible) and sets
   * the io-status. Returns the action for the caller to apply.
   */
  protected errorAction(
    policy: OnErrorPolicy,
    error: unknown,
    operation: "read" | "write",
  ): ErrorAction {
    const kind = ioErrorKind(error);
    const action = errorActionFor(policy, kind);
    this.#emit({ event: "BLOCK_JOB_ERROR", data: { device: this.id, operation, action } });
    if (action === "stop") {
      if (!this.#userPaused) {
        this.#pause();
        this.#userPaused = true;
      }
      if (this.#ioStatus === "ok") this.#ioStatus = kind === "ENOSPC" ? "nospace" : "failed";
    }
    return action;
  }

  // ---- internals ------------------------------------------------------------

  #checkSpeed(speed: number): void {
    if (!(speed >= 0)) {
      throw new JobError(
        "JOB_BAD_SPEED",
        "Parameter 'speed' expects a non-negative value",
      );
    }
  }

  #shouldPause(): boolean {
    return this.#pauseCount > 0 && !this.#cancelled;
  }

  #pause(): void {
    this.#pauseCount++;
    // A parked job pauses at once, so the event precedes the command's return as in qemu.
    const parked = this.#status === "running" || this.#status === "ready";
    if (this.#started && !this.#busy && parked && !this.#deferred) {
      this.#transition(this.#status === "ready" ? "standby" : "paused");
      this.#wake?.();
    }
  }

  #resume(): void {
    this.#pauseCount--;
    if (this.#pauseCount > 0) return;
    this.#enter(false);
  }

  /** Re-enters a parked job (qemu's `job_enter_cond`); `onlyTimer` = only if it sleeps on its timer. */
  #enter(onlyTimer: boolean): void {
    if (!this.#started || this.#deferred || this.#busy) return;
    if (onlyTimer && !this.#sleeping) return;
    if (this.#status === "paused" && !this.#shouldPause()) this.#transition("running");
    if (this.#status === "standby" && !this.#shouldPause()) this.#transition("ready");
    this.#wake?.();
  }

  async #main(): Promise<void> {
    let failure: unknown;
    let failed = false;
    try {
      await this.run();
    } catch (error) {
      failure = error;
      failed = true;
    }
    this.#deferred = true;
    this.#busy = false;
    await this.#complete(failed ? { error: failure } : undefined);
  }

  /** job_completed: success → waiting, pending, maybe finalize; failure or cancel → abort. */
  async #complete(failure: { error: unknown } | undefined): Promise<void> {
    this.#updateRc(failure);
    if (this.#error !== undefined) {
      await this.#finalizeSingle();
      return;
    }
    this.#transition("waiting");
    this.#transition("pending");
    if (!this.autoFinalize) {
      this.#emit({ event: "BLOCK_JOB_PENDING", data: { type: this.type, id: this.id } });
      return;
    }
    await this.#doFinalize();
  }

  #updateRc(failure?: { error: unknown }): void {
    if (this.#error === undefined) {
      if (failure) this.#error = errorText(failure.error);
      else if (this.#cancelled) this.#error = IO_ERROR_TEXT.ECANCELED;
    }
    if (this.#error !== undefined && this.#status !== "concluded") {
      this.#transition("aborting");
    }
  }

  #doFinalize(): Promise<void> {
    this.#finalized ??= this.#finalizeOnce();
    return this.#finalized;
  }

  async #finalizeOnce(): Promise<void> {
    this.#finalizing = true;
    let failure: { error: unknown } | undefined;
    if (this.#error === undefined) {
      try {
        await this.prepare();
      } catch (error) {
        failure = { error };
      }
    }
    await this.#finalizeSingle(failure);
  }

  async #finalizeSingle(failure?: { error: unknown }): Promise<void> {
    this.#finalizing = true;
    this.#updateRc(failure);
    this.clean();
    if (this.#started) {
      const data: BlockJobEndData = {
        device: this.id,
        len: this.#total,
        offset: this.#current,
        speed: this.#speed,
        type: this.type,
      };
      if (this.#cancelled) {
        this.#emit({ event: "BLOCK_JOB_CANCELLED", data });
      } else {
        if (this.#error !== undefined) data.error = this.#error;
        this.#emit({ event: "BLOCK_JOB_COMPLETED", data });
      }
    }
    this.#transition("concluded");
    this.#concludedResolve();
    if (this.autoDismiss || !this.#started) this.#dismiss();
    await Promise.resolve();
  }

  #dismiss(): void {
    this.#transition("null");
    this.#registry.detach(this);
  }

  #transition(to: JobStatus): void {
    const from = this.#status;
    if (!canTransition(from, to)) {
      throw new JobError("JOB_BAD_TRANSITION", `Job '${this.id}': no transition ${from} → ${to}`);
    }
    this.#status = to;
    if (from !== to) this.#emit({ event: "JOB_STATUS_CHANGE", data: { status: to, id: this.id } });
  }

  #emit(event: JobEvent): void {
    this.#registry.emit(event, this);
  }
}

/** The text qemu shows for a job failure: the C library's message for its errno. */
export function errorText(error: unknown): string {
  return IO_ERROR_TEXT[ioErrorKind(error)];
}
