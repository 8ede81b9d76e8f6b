/**
 * Fault plans: errors injected on a drive's backing (its template), so that
 * a management tool's handling of `on-error`, of retries and of outages can
 * be tested without a failing network or disk.
 *
 * A plan is applied by a {@linkcode faultNode} that sits between the overlay
 * and the template: every read of the template passes through it, whether
 * the guest's copy-on-read or a stream job's. Writes never reach a template,
 * so only reads fail, as they do in qemu's `blkdebug` with `read_aio`.
 *
 * @module
 */

import { BlockError, type IoErrorKind } from "../block/error.ts";
import type { BlockNode, BlockStatus } from "../block/node.ts";
import type { Clock } from "../io/clock.ts";
import { Random } from "../sim/random.ts";

/** A byte range `[offset, offset + length)`. */
export interface FaultRange {
  /** First byte of the range. */
  offset: number;
  /** Length in bytes. */
  length: number;
}

/** A window `[start, end)` of the emulator's clock, in ms. */
export interface FaultWindow {
  /** First ms of the window. */
  start: number;
  /** First ms after the window. Default: no end. */
  end?: number;
}

/** What to inject; every field is optional and an empty plan injects nothing. */
export interface FaultPlan {
  /** Probability (0–1) that a read fails, drawn from a PRNG seeded with {@linkcode FaultPlan.seed}. Default 0. */
  errorRate?: number;
  /** Seed of the error-rate PRNG. Default 1. */
  seed?: number;
  /** Reads that overlap any of these ranges fail. Default none. */
  ranges?: readonly FaultRange[];
  /**
   * The template is unreachable: `true` until the plan is lifted, or during
   * the given windows of the emulator's clock. Default false.
   */
  outage?: boolean | readonly FaultWindow[];
  /** The error reads fail with: `EIO` (Input/output error) or `ENOSPC` (No space left on device). Default `EIO`. */
  error?: Extract<IoErrorKind, "EIO" | "ENOSPC">;
}

/** Reads that a {@linkcode faultNode} failed, by cause. */
export interface FaultCounters {
  /** Reads that passed through. */
  reads: number;
  /** Reads failed by the error rate. */
  rateErrors: number;
  /** Reads failed by a range. */
  rangeErrors: number;
  /** Reads failed by an outage. */
  outageErrors: number;
}

/** A backing node whose faults can be changed while it is in use. */
export interface FaultNode extends BlockNode {
  /** The node it wraps. */
  readonly inner: BlockNode;
  /** The plan in force (empty when none). */
  readonly plan: Readonly<FaultPlan>;
  /** Counters since the node was made (a copy). */
  readonly counters: FaultCounters;
  /** Replaces the plan from now on. */
  setPlan(plan: FaultPlan): void;
}

/** Options of {@linkcode faultNode}. */
export interface FaultNodeOptions {
  /** The clock outage windows are read on. */
  clock: Clock;
  /** The plan in force from the start. Default: none (an empty plan). */
  plan?: FaultPlan;
  /** The node name to show. Default: the wrapped node's. */
  nodeName?: string;
}

const TEXT = { EIO: "Input/output error", ENOSPC: "No space left on device" } as const;

/**
 * Wraps `inner` (a read-only template node) so that reads fail as the plan
 * says. The node keeps `inner`'s driver, filename and size (and its name,
 * unless `options.nodeName` gives another), so `query-named-block-nodes`
 * shows the template itself.
 *
 * @example Fail reads of the first MiB until the plan is lifted
 * ```ts
 * import { sourceNode } from "../block/mod.ts";
 * import { systemClock } from "../io/mod.ts";
 * import { faultNode } from "./fault_plan.ts";
 * const template = sourceNode({ size: 4 << 20, read: async (_o, b) => void b.fill(1) }, {
 *   nodeName: "base",
 * });
 * const node = faultNode(template, {
 *   clock: systemClock,
 *   plan: { ranges: [{ offset: 0, length: 1 << 20 }] },
 * });
 * const failed = await node.read(0, new Uint8Array(512)).then(() => false, () => true);
 * node.setPlan({});
 * await node.read(0, new Uint8Array(512));
 * console.log(failed, node.counters.rangeErrors); // true 1
 * ```
 */
export function faultNode(inner: BlockNode, options: FaultNodeOptions): FaultNode {
  const { clock, plan = {} } = options;
  const nodeName = options.nodeName ?? inner.nodeName;
  let current: FaultPlan = { ...plan };
  let random = new Random(plan.seed ?? 1);
  const counters: FaultCounters = { reads: 0, rateErrors: 0, rangeErrors: 0, outageErrors: 0 };

  const inOutage = (): boolean => {
    const outage = current.outage;
    if (outage === undefined || outage === false) return false;
    if (outage === true) return true;
    const now = clock.now();
    return outage.some((w) => now >= w.start && now < (w.end ?? Infinity));
  };

  /** The cause a read of `[offset, offset + length)` fails for now, if any. */
  const failure = (offset: number, length: number): keyof FaultCounters | undefined => {
    if (inOutage()) return "outageErrors";
    if (current.ranges?.some((r) => offset < r.offset + r.length && r.offset < offset + length)) {
      return "rangeErrors";
    }
    // Draw only when a rate is set, so a plan without one leaves the sequence alone.
    if ((current.errorRate ?? 0) > 0 && random.chance(current.errorRate!)) return "rateErrors";
    return undefined;
  };

  return {
    inner,
    ...(inner.clusterSize === undefined ? {} : { clusterSize: inner.clusterSize }),
    get plan() {
      return current;
    },
    get counters() {
      return { ...counters };
    },
    setPlan(next: FaultPlan) {
      if (next.seed !== current.seed) random = new Random(next.seed ?? 1);
      current = { ...next };
    },
    nodeName,
    get driver() {
      return inner.driver;
    },
    get filename() {
      return inner.filename;
    },
    get size() {
      return inner.size;
    },
    get readOnly() {
      return inner.readOnly;
    },
    get backing() {
      return inner.backing;
    },
    read(offset: number, buf: Uint8Array): Promise<void> {
      const cause = failure(offset, buf.length);
      if (cause === undefined) {
        counters.reads++;
        return inner.read(offset, buf);
      }
      counters[cause]++;
      const kind = current.error ?? "EIO";
      return Promise.reject(new BlockError(kind, TEXT[kind]));
    },
    write: (offset, data) => inner.write(offset, data),
    writeZeroes: (offset, length) => inner.writeZeroes(offset, length),
    flush: () => inner.flush(),
    blockStatus: (offset, length): Promise<BlockStatus> => inner.blockStatus(offset, length),
    close: () => inner.close(),
  };
}
