/**
 * Waiting for a block job to end, as `virsh blockpull --wait` does: poll
 * the job's info, report progress, abort it on timeout or on request, and
 * take the outcome from the job's event.
 *
 * @module
 */

import { type Clock, systemClock } from "../io/clock.ts";
import {
  blockJobAbort,
  type BlockJobInfo,
  findBlockJob,
  jobInfoOf,
  pullJobId,
} from "./block_job.ts";
import {
  BLOCK_JOB_EVENTS,
  type BlockJobEvent,
  blockJobEventOf,
  BlockJobStatus,
  type BlockJobStatusValue,
} from "./block_job_event.ts";
import { hasEvents, type QmpConnection } from "./connection.ts";
import { resolveDisk } from "./disk.ts";

/** Options of {@linkcode blockJobWait}. */
export interface BlockJobWaitOptions {
  /** Called with the job's info whenever `cur` or `end` changed (virsh's `--verbose`). */
  onProgress?: (info: BlockJobInfo) => void;
  /** Abort the job after this many ms (virsh's `--timeout`, in seconds there). */
  timeout?: number;
  /** Abort the job when this signal aborts (virsh's Ctrl-C). */
  signal?: AbortSignal;
  /** Abort asynchronously (virsh's `--async`). */
  async?: boolean;
  /** How often to poll the job, in ms. Default 500, as virsh. */
  interval?: number;
  /** How long to wait for the job's event once it has gone, in ms. Default 5000. */
  eventGrace?: number;
  /** Default {@linkcode systemClock}. */
  clock?: Clock;
}

/** How a waited-for job ended. */
export interface BlockJobOutcome {
  /** COMPLETED, FAILED, CANCELED or READY. */
  status: BlockJobStatusValue;
  /** The error text of a failed job, when its event carried one. */
  error?: string;
}

/**
 * Waits until the block job of `disk` ends and says how. With a connection
 * that delivers events (a `QmpClient`), the outcome is the job's event, so
 * a failure is told from a success; otherwise, as virsh does without event
 * callbacks, a job that has vanished counts as COMPLETED. When `timeout`
 * expires or `signal` aborts, the job is aborted (synchronously unless
 * `async`) and the outcome is CANCELED, as in virsh.
 *
 * Unlike virsh, which looks at events only every 500 ms, an event ends the
 * wait as soon as it arrives.
 *
 * @example
 * ```ts ignore
 * await blockPull(conn, "ov");
 * const { status } = await blockJobWait(conn, "ov", { timeout: 60_000 });
 * console.log(status === BlockJobStatus.COMPLETED);
 * ```
 */
export async function blockJobWait(
  conn: QmpConnection,
  diskName: string,
  options: BlockJobWaitOptions = {},
): Promise<BlockJobOutcome> {
  const clock = options.clock ?? systemClock;
  const interval = options.interval ?? 500;
  const disk = await resolveDisk(conn, diskName);
  const stop = new AbortController();
  let event: BlockJobEvent | undefined;
  let wake: () => void = () => {};
  if (hasEvents(conn)) {
    const jobIds = new Set([pullJobId(disk), disk.nodeName, disk.target]);
    for (const name of BLOCK_JOB_EVENTS) {
      conn.waitEvent(name, {
        filter: (e) => jobIds.has(String(e.data.device)),
        signal: stop.signal,
      }).then((e) => {
        event ??= blockJobEventOf(e) ?? undefined;
        wake();
      }, () => {});
    }
  }
  options.signal?.addEventListener("abort", () => wake(), { once: true, signal: stop.signal });
  const start = clock.now();
  let last: BlockJobInfo | undefined;
  try {
    for (;;) {
      const job = await findBlockJob(conn, disk);
      if (event) return outcome(event);
      if (!job) {
        if (!hasEvents(conn)) return { status: BlockJobStatus.COMPLETED };
        await sleepUnless(clock, options.eventGrace ?? 5000, () => event !== undefined, (w) => {
          wake = w;
        });
        return event ? outcome(event) : { status: BlockJobStatus.COMPLETED };
      }
      const info = jobInfoOf(job);
      if (options.onProgress && (info.cur !== last?.cur || info.end !== last?.end)) {
        options.onProgress(info);
      }
      last = info;
      const expired = options.timeout !== undefined && clock.now() - start > options.timeout;
      if (expired || options.signal?.aborted) {
        await blockJobAbort(conn, diskName, { async: options.async ?? false, clock });
        return { status: BlockJobStatus.CANCELED };
      }
      let nap = interval;
      if (options.timeout !== undefined) {
        nap = Math.min(nap, Math.max(1, start + options.timeout + 1 - clock.now()));
      }
      await sleepUnless(clock, nap, () => event !== undefined || !!options.signal?.aborted, (w) => {
        wake = w;
      });
    }
  } finally {
    stop.abort();
  }
}

function outcome(event: BlockJobEvent): BlockJobOutcome {
  return event.error === undefined
    ? { status: event.status }
    : { status: event.status, error: event.error };
}

/** Sleeps `ms` unless `done()` already holds; `arm` receives a function that ends the sleep early. */
async function sleepUnless(
  clock: Clock,
  ms: number,
  done: () => boolean,
  arm: (wake: () => void) => void,
): Promise<void> {
  if (done()) return;
  const ac = new AbortController();
  arm(() => ac.abort());
  await clock.sleep(ms, ac.signal).catch(() => {});
}
