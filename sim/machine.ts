/**
 * One simulated machine provisioned from a remote template in one of the
 * ways the comparison measures, with its guest running on it.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { QedstreamError } from "../io/error.ts";
import type { Storage } from "../io/storage.ts";
import { QedImage } from "../qed/image.ts";
import { BlockDevice } from "../block/device.ts";
import type { OnErrorPolicy } from "../block/job.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import type { BlockNode } from "../block/node.ts";
import { qedNode } from "../block/qed_node.ts";
import {
  type GuestFirstOptions,
  GuestFirstScheduler,
  type GuestFirstStats,
} from "../block/guest_first.ts";
import { startStream } from "../block/stream_job.ts";
import type { ByteRange } from "../block/working_set.ts";
import type { WorkingSetRecorder } from "../block/working_set_recorder.ts";
import { streamOne } from "../block/stream_one.ts";
import { Guest, type GuestOptions, type GuestReport } from "./guest.ts";
import type { RemoteCounters, RemoteNode } from "./remote_template.ts";
import type { SparseTemplate } from "./sparse_template.ts";

/**
 * How a machine gets its disk: `copy` the template before booting (1),
 * boot from an `overlay` backed by the remote forever (2), boot at once and
 * `stream` in parallel with a stream job (3), or stream `managed` by a
 * management loop one chunk at a time with its own pacing (3b).
 */
export type ProvisionMode = "copy" | "overlay" | "stream" | "managed";

/** Settings of the copy (mode `copy`): a sparse copy like `qemu-img convert`. */
export interface CopySettings {
  /** Requests in flight. Default 8. */
  parallel?: number;
  /** Bytes per request. Default 2 MiB. */
  chunkSize?: number;
  /** Attempts per chunk before the copy fails. Default 5. */
  attempts?: number;
}

/** Settings of the stream job (mode `stream`). */
export interface StreamSettings {
  /** Chunks in flight. Default 8 (block/'s default). */
  parallel?: number;
  /** Chunk size. Default 512 KiB. */
  chunkSize?: number;
  /** Bytes per second, 0 = unlimited. Default 0. */
  speed?: number;
  /** The job's `on-error` policy. Default `report`. */
  onError?: OnErrorPolicy;
  /** Ranges to stream first, in order (a recorded working set). Default none: qemu's order. */
  workingSet?: readonly ByteRange[];
  /** Serve guest misses ahead of stream copies (`true`: the scheduler's defaults). Default off. */
  guestFirst?: boolean | Omit<GuestFirstOptions, "clock">;
  /**
   * When the policy stops the job on an error, the machine's management
   * resumes it after this many ms (a retry of the same chunk). Default 200.
   */
  resumeAfterMs?: number;
}

/** Settings of the management loop (mode `managed`). */
export interface ManagedSettings {
  /** Pause after each copied chunk, in ms. Default 10. */
  pauseMs?: number;
  /** Start streaming only once the guest has booted. Default true. */
  startAfterBoot?: boolean;
  /** Chunk size. Default 512 KiB. */
  chunkSize?: number;
  /** Attempts per step before the loop gives up (an error of the remote). Default 5. */
  attempts?: number;
  /** Copy-on-read on the guest's device, as the seed-era prototype required. Default true. */
  copyOnRead?: boolean;
}

/** Options of {@linkcode provisionMachine}. */
export interface MachineOptions {
  /** The machine's name (its client name at the repository). */
  name: string;
  /** How the disk is provisioned. */
  mode: ProvisionMode;
  /** The clock. */
  clock: Clock;
  /** The template (the guest's oracle and the verification's reference). */
  template: SparseTemplate;
  /** This machine's handle onto the repository. */
  remote: RemoteNode;
  /** Local storage for the machine's image. */
  storage: Storage;
  /** Cluster size of the local QED image. Default 65536. */
  clusterSize?: number;
  /** The job registry (stream mode); its clock must be `clock`. */
  jobs?: JobRegistry;
  /** The guest's workload (everything but what the machine supplies). */
  guest?: Omit<GuestOptions, "clock" | "size" | "reference" | "dataRegions">;
  /** The copy (mode `copy`). */
  copy?: CopySettings;
  /** The stream job (mode `stream`). */
  stream?: StreamSettings;
  /** The management loop (mode `managed`). */
  managed?: ManagedSettings;
  /** Record the guest's reads of the template (its working set) until it has booted. */
  recorder?: WorkingSetRecorder;
}

/** What happened to one machine. */
export interface MachineRun {
  /** The machine's name. */
  name: string;
  /** How it was provisioned. */
  mode: ProvisionMode;
  /** When provisioning was asked for (clock ms). */
  startedAt: number;
  /** What the guest did. */
  guest: GuestReport;
  /** When the machine began fetching its local copy (copy or stream), or `null`. */
  fetchStartedAt: number | null;
  /** When it stopped needing the repository, or `null` (never, or a failed stream). */
  independentAt: number | null;
  /** What the machine asked of the repository. */
  remote: RemoteCounters;
  /** The error of the stream job or management loop, if it failed. */
  streamError?: string;
  /** How often a job or loop step met a remote error. */
  streamErrors: number;
  /** The machine's local image. */
  image: QedImage;
  /** The image's node (its backing is the repository until the machine is independent). */
  top: BlockNode;
  /** The guest's device. */
  device: BlockDevice;
  /** The guest (its write model is the verification's second input). */
  guestModel: Guest["model"];
  /** The guest-first scheduler's counters, when the stream used one. */
  guestFirst?: GuestFirstStats;
}

/** A provisioning step failed beyond its retries. */
export class ProvisionError extends QedstreamError {}

const MIB = 1024 * 1024;

/**
 * A machine in the making: {@linkcode Machine.run} provisions the disk as
 * its mode says and runs the guest; {@linkcode Machine.localBytes} can be
 * sampled meanwhile.
 */
export class Machine {
  readonly #o: MachineOptions;
  readonly #storage: Storage;

  /** Prepares a machine; nothing happens before {@linkcode Machine.run}. */
  constructor(options: MachineOptions) {
    this.#o = options;
    this.#storage = options.storage;
  }

  /** Bytes of local storage the machine uses now (its image file's length). */
  localBytes(): Promise<number> {
    return this.#storage.size();
  }

  /** Provisions the disk, runs the guest, and waits for streaming to end. */
  async run(): Promise<MachineRun> {
    const o = this.#o;
    const { clock, template, remote } = o;
    const startedAt = clock.now();
    const clusterSize = o.clusterSize ?? 65536;
    const guest = new Guest({
      ...o.guest,
      clock,
      size: template.size,
      reference: (offset, buf) => template.readSync(offset, buf),
      dataRegions: template.extents,
    });
    let fetchStartedAt: number | null = null;
    let independentAt: number | null = null;
    let streamError: string | undefined;
    let streamErrors = 0;
    const withBacking = o.mode !== "copy";
    await QedImage.create(o.storage, {
      size: template.size,
      clusterSize,
      ...(withBacking ? { backingFile: remote.filename, backingFormat: "raw" } : {}),
    });
    const image = await QedImage.open(o.storage);
    const backing = o.recorder ? o.recorder.wrap(remote) : remote;
    if (o.recorder) void guest.booted.then(() => o.recorder?.stop());
    const top = qedNode(image, {
      nodeName: `${o.name}-disk`,
      ...(withBacking ? { backing } : {}),
    });
    let scheduler: GuestFirstScheduler | undefined;
    const device = new BlockDevice(top, {
      name: o.name,
      copyOnRead: o.mode === "managed" && (o.managed?.copyOnRead ?? true),
    });
    let guestReport: GuestReport;

    switch (o.mode) {
      case "copy": {
        fetchStartedAt = clock.now();
        await copyTemplate(remote, image, o.copy ?? {}, clock);
        await image.flush();
        independentAt = clock.now();
        guestReport = await guest.run(device);
        break;
      }
      case "overlay": {
        guestReport = await guest.run(device);
        break;
      }
      case "stream": {
        if (!o.jobs) throw new ProvisionError("NO_JOBS", "stream mode needs a job registry");
        const s = o.stream ?? {};
        fetchStartedAt = clock.now();
        const job = startStream(o.jobs, device, {
          jobId: `stream-${o.name}`,
          ...(s.parallel !== undefined ? { parallel: s.parallel } : {}),
          ...(s.chunkSize !== undefined ? { chunkSize: s.chunkSize } : {}),
          speed: s.speed ?? 0,
          onError: s.onError ?? "report",
          ...(s.workingSet ? { workingSet: s.workingSet } : {}),
          ...(s.guestFirst
            ? {
              guestFirst: scheduler = new GuestFirstScheduler({
                clock,
                ...(s.guestFirst === true ? {} : s.guestFirst),
              }),
            }
            : {}),
        });
        const off = o.jobs.on((event, j) => {
          if (j !== job || event.event !== "BLOCK_JOB_ERROR") return;
          streamErrors++;
          if (event.data.action === "stop") {
            // The management side retries: resume the job once the error may have passed.
            clock.sleep(s.resumeAfterMs ?? 200).then(() => {
              if (job.userPaused) job.resume();
            });
          }
        });
        const streamed = job.concluded.then(() => {
          off();
          if (job.error !== undefined) streamError = job.error;
          else if (top.backing === null) independentAt = clock.now();
        });
        guestReport = await guest.run(device);
        await streamed;
        break;
      }
      case "managed": {
        const m = o.managed ?? {};
        const loop = (async () => {
          if (m.startAfterBoot ?? true) await guest.booted;
          fetchStartedAt = clock.now();
          const r = await manageStream(device, clock, m);
          streamErrors = r.errors;
          if (r.error !== undefined) streamError = r.error;
          else independentAt = clock.now();
        })();
        guestReport = await guest.run(device);
        await loop;
        break;
      }
    }
    const run: MachineRun = {
      name: o.name,
      mode: o.mode,
      startedAt,
      guest: guestReport,
      fetchStartedAt,
      independentAt,
      remote: remote.counters,
      streamErrors,
      image,
      top,
      device,
      guestModel: guest.model,
    };
    if (streamError !== undefined) run.streamError = streamError;
    if (scheduler) run.guestFirst = scheduler.stats;
    return run;
  }
}

/** Provisions one machine and runs its guest: `new Machine(options).run()`. */
export function provisionMachine(options: MachineOptions): Promise<MachineRun> {
  return new Machine(options).run();
}

/**
 * Copies the template's data into `image` the way `qemu-img convert` does
 * over a network: allocation status first (holes are not fetched), then the
 * data in chunks with several requests in flight; a failed chunk is retried
 * after one round trip's worth of waiting.
 */
async function copyTemplate(
  remote: BlockNode,
  image: QedImage,
  settings: CopySettings,
  clock: Clock,
): Promise<void> {
  const chunk = settings.chunkSize ?? 2 * MIB;
  const attempts = settings.attempts ?? 5;
  const size = remote.size;
  let pos = 0;
  const pending: { offset: number; length: number }[] = [];
  let scanning: Promise<void> = Promise.resolve();
  // One scanner at a time: workers share the allocation walk.
  const next = async (): Promise<{ offset: number; length: number } | undefined> => {
    for (;;) {
      const item = pending.shift();
      if (item) return item;
      if (pos >= size) return undefined;
      const prior = scanning;
      let done!: () => void;
      scanning = new Promise((r) => done = r);
      await prior;
      try {
        if (pending.length === 0 && pos < size) {
          const st = await retry(() => remote.blockStatus(pos, size - pos), attempts, clock);
          if (st.kind === "data") {
            for (let o = 0; o < st.length; o += chunk) {
              pending.push({ offset: pos + o, length: Math.min(chunk, st.length - o) });
            }
          }
          pos += st.length;
        }
      } finally {
        done();
      }
    }
  };
  const worker = async () => {
    for (let item = await next(); item; item = await next()) {
      const buf = new Uint8Array(item.length);
      await retry(() => remote.read(item.offset, buf), attempts, clock);
      await image.write(item.offset, buf);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, settings.parallel ?? 8) }, worker));
}

async function retry<T>(step: () => Promise<T>, attempts: number, clock: Clock): Promise<T> {
  for (let i = 1;; i++) {
    try {
      return await step();
    } catch (error) {
      if (i >= attempts) {
        throw new ProvisionError("PROVISION_FAILED", `gave up after ${attempts} attempts`, {
          cause: error,
        });
      }
      await clock.sleep(100 * i);
    }
  }
}

/** What the management loop achieved. */
interface ManagedOutcome {
  error?: string;
  errors: number;
}

/**
 * The seed's throttled mode: a management loop asks for one chunk at a time
 * and sleeps between steps; when the whole device is local it removes the
 * backing link.
 */
async function manageStream(
  device: BlockDevice,
  clock: Clock,
  settings: ManagedSettings,
): Promise<ManagedOutcome> {
  const pauseMs = settings.pauseMs ?? 10;
  const attempts = settings.attempts ?? 5;
  const chunkSize = settings.chunkSize ?? 512 * 1024;
  let errors = 0;
  let failedInRow = 0;
  let at = 0;
  for (;;) {
    let step;
    try {
      step = await streamOne(device, at, { chunkSize });
      failedInRow = 0;
    } catch (error) {
      errors++;
      if (++failedInRow >= attempts) {
        return { error: error instanceof Error ? error.message : String(error), errors };
      }
      await clock.sleep(pauseMs * failedInRow);
      continue;
    }
    if (step.completed) return { errors };
    // Reaching the end without completing means a piece is still missing: walk again.
    at = step.done ? 0 : step.next;
    // Pace only copies: a skipped piece costs the repository nothing.
    if (step.copied && pauseMs > 0) await clock.sleep(pauseMs);
  }
}
