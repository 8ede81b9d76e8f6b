/**
 * The job state machine of qemu's job core (`job.c`) as data.
 *
 * {@linkcode JOB_TRANSITIONS} says which status may follow which,
 * {@linkcode JOB_VERBS} in which statuses each command verb is accepted
 * (`qmp-streaming.md` §3.2, §3.3). The job code and the tests read the same
 * tables.
 *
 * @module
 */

import { JobError } from "./error.ts";

/** qemu's `JobStatus`. */
export type JobStatus =
  | "undefined"
  | "created"
  | "running"
  | "paused"
  | "ready"
  | "standby"
  | "waiting"
  | "pending"
  | "aborting"
  | "concluded"
  | "null";

/** Every {@linkcode JobStatus}, in qemu's enum order. */
export const JOB_STATUSES: readonly JobStatus[] = [
  "undefined",
  "created",
  "running",
  "paused",
  "ready",
  "standby",
  "waiting",
  "pending",
  "aborting",
  "concluded",
  "null",
];

/** qemu's `JobVerb` (`change` exists from 8.2; it is in the table for completeness). */
export type JobVerb =
  | "cancel"
  | "pause"
  | "resume"
  | "set-speed"
  | "complete"
  | "finalize"
  | "dismiss"
  | "change";

/** Every {@linkcode JobVerb}. */
export const JOB_VERB_NAMES: readonly JobVerb[] = [
  "cancel",
  "pause",
  "resume",
  "set-speed",
  "complete",
  "finalize",
  "dismiss",
  "change",
];

/** The statuses each status may move to (qemu's `JobSTT`). */
export const JOB_TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  undefined: ["created"],
  created: ["running", "aborting", "null"],
  running: ["paused", "ready", "waiting", "aborting"],
  paused: ["running"],
  ready: ["standby", "waiting", "aborting"],
  standby: ["ready"],
  waiting: ["pending", "aborting"],
  pending: ["aborting", "concluded"],
  aborting: ["aborting", "concluded"],
  concluded: ["null"],
  null: [],
};

/** The statuses in which each verb is accepted (qemu's `JobVerbTable`). */
export const JOB_VERBS: Readonly<Record<JobVerb, readonly JobStatus[]>> = {
  cancel: ["created", "running", "paused", "ready", "standby", "waiting", "pending"],
  pause: ["created", "running", "paused", "ready", "standby"],
  resume: ["created", "running", "paused", "ready", "standby"],
  "set-speed": ["created", "running", "paused", "ready", "standby"],
  complete: ["ready", "standby"],
  finalize: ["pending"],
  dismiss: ["concluded"],
  change: ["created", "running", "paused", "ready", "standby"],
};

/** Whether `from → to` is an allowed transition. */
export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return JOB_TRANSITIONS[from].includes(to);
}

/** Whether `verb` is accepted in `status`. */
export function verbAllowed(verb: JobVerb, status: JobStatus): boolean {
  return JOB_VERBS[verb].includes(status);
}

/**
 * Throws qemu's refusal when `verb` is not accepted in `status`:
 * `Job '<id>' in state '<status>' cannot accept command verb '<verb>'`.
 *
 * @example
 * ```ts
 * import { checkVerb } from "./job_status.ts";
 * try {
 *   checkVerb("job0", "running", "complete");
 * } catch (e) {
 *   console.log((e as Error).message);
 *   // Job 'job0' in state 'running' cannot accept command verb 'complete'
 * }
 * ```
 */
export function checkVerb(id: string, status: JobStatus, verb: JobVerb): void {
  if (verbAllowed(verb, status)) return;
  throw new JobError(
    "JOB_VERB_REFUSED",
    `Job '${id}' in state '${status}' cannot accept command verb '${verb}'`,
  );
}
