/**
 * The simulator: a virtual clock, a remote template repository, a guest
 * workload, and the provisioning comparison that is qedstream's main job.
 *
 * The comparison provisions the same machine from the same remote template
 * in the ways the seed compares, on a {@linkcode VirtualClock}, so minutes of
 * simulated time run in seconds and repeat exactly for a seed:
 *
 * 1. `copy` — copy the template to local storage, then boot;
 * 2. `overlay` — boot at once from a local overlay backed by the remote, forever;
 * 3. `stream` — boot at once and stream the template into the overlay with
 *    block/'s stream job (copy-on-read included), ending independent;
 * 3b. `managed` — the same driven one chunk at a time by a management loop
 *    with its own pacing (the seed's single-sector mode);
 * 3w. `working-set` — the stream copies the working set recorded on an
 *    earlier boot first, in order, then the rest;
 * N. `fleet` — N machines streaming from one repository at once.
 *
 * Pieces, from the bottom up:
 * - {@linkcode Random} (seeded PRNG) and {@linkcode summarize} (percentiles);
 * - {@linkcode SparseTemplate}: a template of any virtual size whose bytes are
 *   computed from the offset (4 GiB costs no memory);
 * - {@linkcode SharedLink} and {@linkcode RemoteTemplate}: the repository with
 *   round-trip latency, bandwidth shared by all clients, a request limit,
 *   faults, and per-client counters; each machine's {@linkcode RemoteNode} is a
 *   read-only `BlockNode` that can back an overlay;
 * - {@linkcode LocalDisk}: a machine's local storage with SSD-like latency;
 * - {@linkcode Guest}: a boot-then-steady workload that times every I/O and
 *   checks every byte it reads;
 * - {@linkcode Machine}: one machine provisioned in one of the modes;
 * - {@linkcode runComparison}, {@linkcode formatComparisonTable},
 *   {@linkcode comparisonSvg}, {@linkcode renderTimelineSvg}, {@linkcode verifyImage}.
 *
 * @example Run a small comparison and print the table
 * ```ts
 * import { formatComparisonTable, runComparison } from "./mod.ts";
 * const result = await runComparison({
 *   template: { size: 128 * 1024 * 1024, bootRegionLength: 4 * 1024 * 1024 },
 *   guest: { boot: { regionLength: 2 * 1024 * 1024, files: 10 }, steady: { durationMs: 1000 } },
 *   machines: 2,
 * });
 * console.log(formatComparisonTable(result));
 * console.log(result.verified); // true
 * ```
 *
 * @module
 */

export {
  type RunOptions,
  VirtualClock,
  VirtualClockError,
  type VirtualClockOptions,
} from "./virtual_clock.ts";
export { hashString, mix32, Random } from "./random.ts";
export { percentile, summarize, type Summary } from "./stats.ts";
export {
  type Extent,
  SparseTemplate,
  type SparseTemplateOptions,
  type TemplateStatus,
} from "./sparse_template.ts";
export { SharedLink, type SharedLinkOptions } from "./shared_link.ts";
export {
  MAX_STATUS_RUNS,
  type RemoteCounters,
  RemoteError,
  type RemoteFaults,
  type RemoteLoad,
  RemoteNode,
  RemoteTemplate,
  type RemoteTemplateOptions,
  type SlowPeriod,
  type StatusRun,
  type TemplateSource,
  type TimeWindow,
} from "./remote_template.ts";
export { LocalDisk, type LocalDiskOptions } from "./local_disk.ts";
export { MODEL_BLOCK, WriteModel } from "./write_model.ts";
export {
  type BootOptions,
  Guest,
  type GuestDisk,
  GuestMismatchError,
  type GuestOptions,
  type GuestReport,
  type IoSample,
  type Reference,
  type SteadyOptions,
} from "./guest.ts";
export {
  type CopySettings,
  Machine,
  type MachineOptions,
  type MachineRun,
  type ManagedSettings,
  ProvisionError,
  provisionMachine,
  type ProvisionMode,
  type StreamSettings,
} from "./machine.ts";
export { verifyImage, type VerifyOptions, type VerifyResult } from "./verify.ts";
export { type Marker, renderTimelineSvg, type Series, type TimelineChart } from "./svg.ts";
export {
  type ComparisonOptions,
  type ComparisonProgress,
  type ComparisonResult,
  comparisonSvg,
  type ComparisonTimeline,
  formatBytes,
  formatComparisonTable,
  formatDuration,
  type LatencyBreakdown,
  type MachineResult,
  runComparison,
  SCENARIO_KINDS,
  type ScenarioKind,
  scenarioLabel,
  type ScenarioResult,
  type WorkingSetSpeedup,
  workingSetSpeedup,
  type WorkingSetSummary,
} from "./scenario.ts";
