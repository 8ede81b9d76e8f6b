/**
 * The provisioning comparison: the same guest on the same remote template,
 * provisioned four ways, plus a fleet of machines streaming at once, all on
 * a virtual clock so that a run is exact, repeatable and fast.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import type { Storage } from "../io/storage.ts";
import { JobRegistry } from "../block/job_registry.ts";
import { decodeWorkingSet, encodeWorkingSet } from "../block/working_set.ts";
import { WorkingSetRecorder } from "../block/working_set_recorder.ts";
import type { BootOptions, IoSample, SteadyOptions } from "./guest.ts";
import {
  type CopySettings,
  Machine,
  type MachineRun,
  type ManagedSettings,
  type ProvisionMode,
  type StreamSettings,
} from "./machine.ts";
import { type RemoteFaults, type RemoteLoad, RemoteTemplate } from "./remote_template.ts";
import { SparseTemplate, type SparseTemplateOptions } from "./sparse_template.ts";
import { summarize, type Summary } from "./stats.ts";
import { LocalDisk } from "./local_disk.ts";
import { type Marker, renderTimelineSvg, type Series } from "./svg.ts";
import { verifyImage, type VerifyResult } from "./verify.ts";
import { VirtualClock } from "./virtual_clock.ts";

/**
 * A scenario: one of the provisioning modes for one machine, `working-set`
 * (the stream copying a working set recorded on an earlier boot first), or
 * `fleet` (N machines streaming at once).
 */
export type ScenarioKind = ProvisionMode | "working-set" | "fleet";

/** Every scenario, in the order the comparison runs and prints them. */
export const SCENARIO_KINDS: readonly ScenarioKind[] = [
  "copy",
  "overlay",
  "stream",
  "managed",
  "working-set",
  "fleet",
];

/** The row label of each scenario. */
export function scenarioLabel(kind: ScenarioKind, machines: number): string {
  switch (kind) {
    case "copy":
      return "1  copy, then boot";
    case "overlay":
      return "2  overlay on remote";
    case "stream":
      return "3  boot + stream";
    case "managed":
      return "3b boot + managed 1-chunk";
    case "working-set":
      return "3w working-set first";
    case "fleet":
      return `N  ${machines} x (3) at once`;
  }
}

/** Options of {@linkcode runComparison}; every field has a default that makes the point. */
export interface ComparisonOptions {
  /** Seed of the template, the guests and the faults. Default 1. */
  seed?: number;
  /** The template's layout. Default: 4 GiB, 64 MiB boot region, 8 % of the rest data (about 386 MiB). */
  template?: SparseTemplateOptions;
  /** Round-trip time to the repository in ms. Default 20. */
  rttMs?: number;
  /** The repository's link in bytes per second. Default 125,000,000 (1 Gbit/s). */
  bandwidth?: number;
  /** Requests the repository serves at once. Default 64. */
  maxInFlight?: number;
  /** Faults of the repository. Default none. */
  faults?: RemoteFaults;
  /** Machines of the fleet scenario. Default 3. */
  machines?: number;
  /** Which scenarios to run. Default {@linkcode SCENARIO_KINDS}. */
  scenarios?: readonly ScenarioKind[];
  /** Cluster size of the local images. Default 65536. */
  clusterSize?: number;
  /** The guest's workload. Defaults: see {@linkcode BootOptions} and {@linkcode SteadyOptions}. */
  guest?: { boot?: BootOptions; steady?: SteadyOptions };
  /** The copy of option 1. */
  copy?: CopySettings;
  /** The stream job of options 3 and N. */
  stream?: StreamSettings;
  /** The management loop of option 3b. */
  managed?: ManagedSettings;
  /** Interval of the timeline's samples of local bytes, in ms. Default 250. */
  sampleMs?: number;
  /** Verify every machine's image at the end. Default true. */
  verify?: boolean;
  /** Count fetches per unit of this many bytes (see {@linkcode RemoteTemplate}). Default 0 (off). */
  trackGranularity?: number;
  /** Makes the clock of each scenario. Default: a new {@linkcode VirtualClock}. */
  clock?: () => Clock;
  /** Makes a machine's local storage. Default: a new {@linkcode LocalDisk} on the scenario's clock. */
  createStorage?: (scenario: ScenarioKind, machine: string) => Storage | Promise<Storage>;
  /** Latency of each request to a machine's local disk, in ms. Default 0.05. */
  localLatencyMs?: number;
  /** Called at every timeline sample, for progress displays. */
  onProgress?: (progress: ComparisonProgress) => void;
  /** Fail a scenario whose virtual time passes this many ms. Default 3,600,000. */
  limitMs?: number;
}

/** A progress report of a running comparison. */
export interface ComparisonProgress {
  /** The running scenario. */
  scenario: ScenarioKind;
  /** Its label. */
  label: string;
  /** Its index in the run (0-based) and the number of scenarios. */
  index: number;
  /** How many scenarios run. */
  count: number;
  /** Virtual ms since the scenario started. */
  elapsedMs: number;
  /** Mean local bytes per machine of the scenario. */
  localBytes: number;
  /** The template's data bytes (what a complete local copy holds, roughly). */
  templateBytes: number;
}

/** Latency summaries of a machine's guest I/O (ms), split around its fetch window. */
export interface LatencyBreakdown {
  /** Every I/O. */
  all: Summary;
  /** I/O of the boot phase. */
  boot: Summary;
  /** I/O issued before the machine began fetching its copy (option 2: everything). */
  before: Summary;
  /** I/O issued while it was copying or streaming. */
  during: Summary;
  /** I/O issued once it no longer needed the repository. */
  after: Summary;
}

/** The measurements of one machine. */
export interface MachineResult {
  /** The machine's name. */
  name: string;
  /** How it was provisioned. */
  mode: ProvisionMode;
  /** From the request to provision until the guest's first I/O completed, in ms. */
  firstIoMs: number;
  /** From the request until the boot phase completed. */
  bootDoneMs: number;
  /** From the request until the machine no longer needed the repository; `null` = never. */
  independentMs: number | null;
  /** When the guest's workload ended. */
  guestDoneMs: number;
  /** Payload bytes fetched from the repository. */
  bytesFetched: number;
  /** Read requests sent to the repository. */
  readRequests: number;
  /** Allocation-status requests sent to the repository. */
  statusRequests: number;
  /** Requests that failed at the repository. */
  remoteErrors: number;
  /** Errors the stream job or management loop met (retried or not). */
  streamErrors: number;
  /** The stream's final error, if it failed. */
  streamError?: string;
  /** Guest reads, writes and bytes written. */
  guest: { reads: number; writes: number; bytesRead: number; bytesWritten: number };
  /** Guest latency percentiles. */
  latency: LatencyBreakdown;
  /** Length of the local image file at the end. */
  localBytes: number;
  /** Guest I/O attempts that failed and were retried. */
  guestIoErrors: number;
  /** Units (of `trackGranularity` bytes) fetched more than once; 0 when not tracked. */
  refetchedUnits: number;
  /** The final verification (when enabled). */
  verify?: VerifyResult;
}

/** The measurements of one scenario. */
export interface ScenarioResult {
  /** Which scenario. */
  kind: ScenarioKind;
  /** Its row label. */
  label: string;
  /** Its machines. */
  machines: MachineResult[];
  /** The repository's load during the scenario. */
  repository: RemoteLoad;
  /** Virtual ms until every machine was done. */
  durationMs: number;
  /** The working set the `working-set` scenario recorded and streamed first. */
  workingSet?: WorkingSetSummary;
}

/** The working set of the `working-set` scenario. */
export interface WorkingSetSummary {
  /** Ranges recorded, in replay order. */
  ranges: number;
  /** Distinct bytes they cover. */
  bytes: number;
  /** Size of its file (`block/working_set.ts`). */
  fileBytes: number;
}

/** The timeline for the picture. */
export interface ComparisonTimeline {
  /** Mean local bytes per machine over time, one series per scenario. */
  localBytes: Series[];
  /** Guest latency samples over time (the first machine of each scenario, thinned). */
  latency: Series[];
  /** When each scenario's machines stopped needing the repository. */
  markers: Marker[];
  /** The template's data bytes. */
  referenceBytes: number;
}

/** What {@linkcode runComparison} returns. */
export interface ComparisonResult {
  /** The parameters of the run, resolved. */
  settings: {
    seed: number;
    templateSize: number;
    templateDataBytes: number;
    templateRegions: number;
    rttMs: number;
    bandwidth: number;
    maxInFlight: number;
    machines: number;
    clusterSize: number;
    /** `virtual` when every scenario ran on a {@linkcode VirtualClock}, else `real`. */
    timeBase: "virtual" | "real";
  };
  /** One result per scenario, in run order. */
  scenarios: ScenarioResult[];
  /** The timeline for {@linkcode comparisonSvg}. */
  timeline: ComparisonTimeline;
  /** Whether every verification that ran passed (`true` when none ran). */
  verified: boolean;
}

const MIB = 1024 * 1024;
const MAX_LATENCY_POINTS = 1200;

/**
 * Runs the comparison. Every scenario gets a fresh repository and a fresh
 * clock starting at 0; with the default virtual clocks and in-memory storage
 * the result depends only on the options.
 *
 * @example A small comparison
 * ```ts
 * import { runComparison, formatComparisonTable } from "./scenario.ts";
 * const result = await runComparison({
 *   template: { size: 256 * 1024 * 1024, bootRegionLength: 8 * 1024 * 1024 },
 *   guest: { boot: { regionLength: 4 * 1024 * 1024, files: 20 }, steady: { durationMs: 2000 } },
 *   machines: 2,
 * });
 * console.log(formatComparisonTable(result));
 * ```
 */
export async function runComparison(options: ComparisonOptions = {}): Promise<ComparisonResult> {
  const seed = options.seed ?? 1;
  const template = new SparseTemplate({
    size: 4 * 1024 * MIB,
    bootRegionLength: 64 * MIB,
    dataFraction: 0.08,
    seed,
    ...options.template,
  });
  const kinds = options.scenarios ?? SCENARIO_KINDS;
  const machines = Math.max(1, options.machines ?? 3);
  const settings: ComparisonResult["settings"] = {
    seed,
    templateSize: template.size,
    templateDataBytes: template.dataBytes,
    templateRegions: template.extents.length,
    rttMs: options.rttMs ?? 20,
    bandwidth: options.bandwidth ?? 125_000_000,
    maxInFlight: options.maxInFlight ?? 64,
    machines,
    clusterSize: options.clusterSize ?? 65536,
    timeBase: "virtual",
  };
  const scenarios: ScenarioResult[] = [];
  const timeline: ComparisonTimeline = {
    localBytes: [],
    latency: [],
    markers: [],
    referenceBytes: template.dataBytes,
  };
  for (const [index, kind] of kinds.entries()) {
    const out = await runScenario(kind, index, kinds.length, template, settings, options);
    scenarios.push(out.result);
    timeline.localBytes.push(out.local);
    timeline.latency.push(out.latency);
    timeline.markers.push(...out.markers);
    if (!out.virtual) settings.timeBase = "real";
  }
  const verified = scenarios.every((s) => s.machines.every((m) => m.verify?.ok ?? true));
  return { settings, scenarios, timeline, verified };
}

async function runScenario(
  kind: ScenarioKind,
  index: number,
  count: number,
  template: SparseTemplate,
  settings: ComparisonResult["settings"],
  options: ComparisonOptions,
): Promise<
  { result: ScenarioResult; local: Series; latency: Series; markers: Marker[]; virtual: boolean }
> {
  const clock = options.clock?.() ?? new VirtualClock();
  const label = scenarioLabel(kind, settings.machines);
  const repo = new RemoteTemplate(template, {
    clock,
    rttMs: settings.rttMs,
    bandwidth: settings.bandwidth,
    maxInFlight: settings.maxInFlight,
    ...(options.faults ? { faults: options.faults } : {}),
    ...(options.trackGranularity ? { trackGranularity: options.trackGranularity } : {}),
    name: "template",
  });
  const jobs = new JobRegistry({ clock });
  const n = kind === "fleet" ? settings.machines : 1;
  const mode: ProvisionMode = kind === "fleet" || kind === "working-set" ? "stream" : kind;
  let stream = options.stream;
  let workingSet: WorkingSetSummary | undefined;
  if (kind === "working-set") {
    // Recorded on an earlier boot of the same guest (untimed), kept as a file, replayed by the stream.
    const file = await recordWorkingSet(template, settings, options);
    const ws = decodeWorkingSet(file);
    const bytes = ws.ranges.reduce((sum, r) => sum + r.length, 0);
    workingSet = { ranges: ws.ranges.length, bytes, fileBytes: file.length };
    stream = { ...options.stream, workingSet: ws.ranges };
  }
  const t0 = clock.now();
  const machines: Machine[] = [];
  for (let i = 0; i < n; i++) {
    const name = kind === "fleet" ? `vm${i + 1}` : kind;
    machines.push(
      new Machine({
        name,
        mode,
        clock,
        template,
        remote: repo.connect(name),
        storage: await (options.createStorage?.(kind, name) ??
          new LocalDisk({ clock, latencyMs: options.localLatencyMs ?? 0.05 })),
        clusterSize: settings.clusterSize,
        jobs,
        guest: {
          seed: settings.seed * 1000 + i,
          ...(options.guest?.boot ? { boot: options.guest.boot } : {}),
          ...(options.guest?.steady ? { steady: options.guest.steady } : {}),
        },
        ...(options.copy ? { copy: options.copy } : {}),
        ...(stream ? { stream } : {}),
        ...(options.managed ? { managed: options.managed } : {}),
      }),
    );
  }
  const sampleMs = options.sampleMs ?? 250;
  const points: [number, number][] = [];
  const sample = async () => {
    let total = 0;
    for (const m of machines) total += await m.localBytes();
    const mean = total / machines.length;
    const elapsedMs = clock.now() - t0;
    points.push([elapsedMs, mean]);
    options.onProgress?.({
      scenario: kind,
      label,
      index,
      count,
      elapsedMs,
      localBytes: mean,
      templateBytes: template.dataBytes,
    });
  };
  const main = async () => {
    const stop = new AbortController();
    const sampler = (async () => {
      try {
        for (;;) {
          await sample();
          await clock.sleep(sampleMs, stop.signal);
        }
      } catch {
        // Stopped.
      }
    })();
    const runs = await Promise.all(machines.map((m) => m.run()));
    const durationMs = clock.now() - t0;
    stop.abort();
    await sampler;
    await sample();
    const results: MachineResult[] = [];
    const latencyPoints = runs[0]!.guest.samples.map((x): [number, number] => [
      x.at - t0,
      x.latencyMs,
    ]);
    for (const run of runs) {
      const r = machineResult(run, t0, await run.image.storage.size());
      r.refetchedUnits = repo.clients.get(run.name)?.refetchedUnits ?? 0;
      if (options.verify ?? true) {
        r.verify = await verifyImage(run.image, template, run.guestModel, {
          expectIndependent: run.mode !== "overlay",
        });
      }
      results.push(r);
      if (run.independentAt !== null) await run.image.close();
    }
    return { results, durationMs, latencyPoints };
  };
  const { results, durationMs, latencyPoints } = clock instanceof VirtualClock
    ? await clock.run(main, { limit: options.limitMs ?? 3_600_000 })
    : await main();
  const markers: Marker[] = [];
  const independent = results.map((r) => r.independentMs);
  if (independent.every((t) => t !== null)) {
    const at = Math.max(...(independent as number[]));
    markers.push({ label, at, text: kind === "fleet" ? "all local" : "local" });
  }
  return {
    result: {
      kind,
      label,
      machines: results,
      repository: repo.load,
      durationMs,
      ...(workingSet ? { workingSet } : {}),
    },
    local: { label, points },
    latency: { label, points: thin(latencyPoints) },
    markers,
    virtual: clock instanceof VirtualClock,
  };
}

/**
 * Boots the scenario's first guest once on an overlay over a fresh
 * repository (its own virtual clock, not timed), records what it reads from
 * the template until it has booted, and returns the working-set file.
 */
async function recordWorkingSet(
  template: SparseTemplate,
  settings: ComparisonResult["settings"],
  options: ComparisonOptions,
): Promise<Uint8Array> {
  const clock = new VirtualClock();
  const repo = new RemoteTemplate(template, {
    clock,
    rttMs: settings.rttMs,
    bandwidth: settings.bandwidth,
    maxInFlight: settings.maxInFlight,
    name: "template",
  });
  const recorder = new WorkingSetRecorder();
  const machine = new Machine({
    name: "recording",
    mode: "overlay",
    clock,
    template,
    remote: repo.connect("recording"),
    storage: new LocalDisk({ clock, latencyMs: options.localLatencyMs ?? 0.05 }),
    clusterSize: settings.clusterSize,
    guest: {
      seed: settings.seed * 1000,
      ...(options.guest?.boot ? { boot: options.guest.boot } : {}),
      steady: { ...options.guest?.steady, durationMs: 0 },
    },
    recorder,
  });
  await clock.run(() => machine.run(), { limit: options.limitMs ?? 3_600_000 });
  const ws = await recorder.finish({
    size: template.size,
    read: (offset, buf) => Promise.resolve(template.readSync(offset, buf)),
  });
  return encodeWorkingSet(ws);
}

/** How much sooner the `working-set` row booted than the plain `stream` row. */
export interface WorkingSetSpeedup {
  /** Boot time with the plain stream, ms. */
  plainBootMs: number;
  /** Boot time with the working set first, ms. */
  workingSetBootMs: number;
  /** `plainBootMs / workingSetBootMs`. */
  ratio: number;
}

/** The working-set row's boot speed-up over the plain stream row, when both ran. */
export function workingSetSpeedup(result: ComparisonResult): WorkingSetSpeedup | undefined {
  const plain = result.scenarios.find((s) => s.kind === "stream")?.machines[0];
  const ws = result.scenarios.find((s) => s.kind === "working-set")?.machines[0];
  if (!plain || !ws) return undefined;
  return {
    plainBootMs: plain.bootDoneMs,
    workingSetBootMs: ws.bootDoneMs,
    ratio: plain.bootDoneMs / Math.max(1e-9, ws.bootDoneMs),
  };
}

function thin(points: [number, number][]): [number, number][] {
  if (points.length <= MAX_LATENCY_POINTS) return points;
  // Keep the slowest sample of each group, so spikes stay visible.
  const k = Math.ceil(points.length / MAX_LATENCY_POINTS);
  const out: [number, number][] = [];
  for (let i = 0; i < points.length; i += k) {
    let best = points[i]!;
    for (let j = i + 1; j < Math.min(points.length, i + k); j++) {
      if (points[j]![1] > best[1]) best = points[j]!;
    }
    out.push(best);
  }
  return out;
}

function machineResult(run: MachineRun, t0: number, localBytes: number): MachineResult {
  const g = run.guest;
  const rel = (t: number) => t - t0;
  const start = run.fetchStartedAt ?? Infinity;
  const end = run.independentAt ?? Infinity;
  const lat = (pick: (s: IoSample) => boolean) =>
    summarize(g.samples.filter(pick).map((s) => s.latencyMs));
  const r: MachineResult = {
    name: run.name,
    mode: run.mode,
    firstIoMs: rel(g.firstIoDoneAt),
    bootDoneMs: rel(g.bootDoneAt),
    independentMs: run.independentAt === null ? null : rel(run.independentAt),
    guestDoneMs: rel(g.finishedAt),
    bytesFetched: run.remote.bytes,
    readRequests: run.remote.readRequests,
    statusRequests: run.remote.statusRequests,
    remoteErrors: run.remote.errors,
    streamErrors: run.streamErrors,
    guest: {
      reads: g.reads,
      writes: g.writes,
      bytesRead: g.bytesRead,
      bytesWritten: g.bytesWritten,
    },
    latency: {
      all: lat(() => true),
      boot: lat((s) => s.phase === "boot"),
      before: lat((s) => s.at < start),
      during: lat((s) => s.at >= start && s.at < end),
      after: lat((s) => s.at >= end),
    },
    localBytes,
    guestIoErrors: g.ioErrors,
    refetchedUnits: 0,
  };
  if (run.streamError !== undefined) r.streamError = run.streamError;
  return r;
}

/** Formats bytes with a binary unit (`467 MiB`). */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 || u === 0 ? Math.round(v) : v.toFixed(1)} ${units[u]}`;
}

/** Formats a duration in ms for the table (`23 ms`, `4.12 s`, `never`). */
export function formatDuration(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return "never";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function p50p99(s: Summary): string {
  if (s.count === 0) return "-";
  const f = (v: number) => (v < 10 ? v.toFixed(1) : v.toFixed(0));
  return `${f(s.p50)}/${f(s.p99)} ms`;
}

/**
 * The comparison as a text table: one row per scenario (the fleet row shows
 * its slowest machine and the repository's totals), then the fleet's
 * machines and the verification.
 */
export function formatComparisonTable(result: ComparisonResult): string {
  const head = [
    "option",
    "first I/O",
    "booted",
    "local at",
    "fetched",
    "requests",
    "p50/p99 before",
    "p50/p99 during",
    "p50/p99 after",
    "repo peak",
  ];
  const rows: string[][] = [head];
  for (const s of result.scenarios) {
    const ms = s.machines;
    const worst = (f: (m: MachineResult) => number | null) => {
      const v = ms.map(f);
      return v.some((x) => x === null) ? null : Math.max(...(v as number[]));
    };
    const m0 = ms[0]!;
    const peakBin = Math.max(0, ...s.repository.bytesPerBin);
    rows.push([
      s.label,
      formatDuration(worst((m) => m.firstIoMs)),
      formatDuration(worst((m) => m.bootDoneMs)),
      formatDuration(worst((m) => m.independentMs)),
      formatBytes(s.repository.bytes),
      String(s.repository.readRequests + s.repository.statusRequests),
      p50p99(m0.latency.before),
      p50p99(m0.latency.during),
      p50p99(m0.latency.after),
      `${formatBytes(peakBin / (s.repository.binMs / 1000))}/s`,
    ]);
  }
  const widths = head.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  const out = [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  ")];
  for (const r of rows.slice(1)) out.push(line(r));
  const st = result.settings;
  out.push(
    "",
    `template ${formatBytes(st.templateSize)} (${
      formatBytes(st.templateDataBytes)
    } data in ${st.templateRegions} regions), ` +
      `link ${
        (st.bandwidth * 8 / 1e9).toFixed(st.bandwidth * 8 >= 1e9 ? 0 : 2)
      } Gbit/s, RTT ${st.rttMs} ms, seed ${st.seed}`,
    "times from the request to provision; 'local at' = when the machine no longer needs the repository;",
    "fetched and requests (reads + allocation-status queries) are the repository's totals for the row;",
    "latency of guest I/O before / during / after the machine fetched its copy (first machine of each row).",
  );
  const wsRow = result.scenarios.find((s) => s.kind === "working-set");
  if (wsRow?.workingSet) {
    const w = wsRow.workingSet;
    const speedup = workingSetSpeedup(result);
    out.push(
      `working set first: ${w.ranges} ranges, ${
        formatBytes(w.bytes)
      } recorded on an earlier boot ` +
        `(a ${formatBytes(w.fileBytes)} file), streamed first, then the rest` +
        (speedup
          ? `; booted in ${formatDuration(speedup.workingSetBootMs)} vs ${
            formatDuration(speedup.plainBootMs)
          } with the plain stream: ${speedup.ratio.toFixed(2)}x sooner`
          : ""),
    );
  }
  const fleet = result.scenarios.find((s) => s.kind === "fleet");
  if (fleet) {
    out.push(
      `fleet: ${fleet.machines.length} machines, repository served ${
        formatBytes(fleet.repository.bytes)
      } ` +
        `(${
          (fleet.repository.bytes / Math.max(1, st.templateDataBytes)).toFixed(2)
        } x the template's data), ` +
        `peak ${fleet.repository.peakInFlight} requests in service, ${fleet.repository.peakQueued} queued; ` +
        `all local at ${
          formatDuration(Math.max(...fleet.machines.map((m) => m.independentMs ?? Infinity)))
        }`,
    );
  }
  const checks = result.scenarios.flatMap((s) => s.machines.filter((m) => m.verify));
  if (checks.length > 0) {
    const bad = checks.filter((m) => !m.verify!.ok);
    out.push(
      bad.length === 0
        ? `verified ${checks.length} images: check clean, independent images read equal to the template plus the guest's writes`
        : `VERIFICATION FAILED: ${
          bad.map((m) => `${m.name}: ${m.verify!.problems.join("; ")}`).join(" | ")
        }`,
    );
  }
  return out.join("\n");
}

/** The comparison's timeline as an SVG picture (see {@linkcode renderTimelineSvg}). */
export function comparisonSvg(result: ComparisonResult): string {
  const st = result.settings;
  return renderTimelineSvg({
    title: "Provisioning from a remote template: copy vs overlay vs stream",
    subtitle:
      `template ${formatBytes(st.templateSize)} (${formatBytes(st.templateDataBytes)} data), ` +
      `${
        (st.bandwidth * 8 / 1e9).toFixed(2)
      } Gbit/s, RTT ${st.rttMs} ms, seed ${st.seed}; ${st.timeBase} time`,
    localBytes: result.timeline.localBytes,
    referenceBytes: result.timeline.referenceBytes,
    latency: result.timeline.latency,
    markers: result.timeline.markers,
    timeAxis: `${st.timeBase} time`,
  });
}
