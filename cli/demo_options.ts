/**
 * The options of `qedstream demo`: parsed, checked and turned into the
 * simulator's {@linkcode ComparisonOptions}. A bad option is one line and
 * exit code 2.
 *
 * @module
 */

import { SCENARIO_KINDS, type ScenarioKind } from "../sim/scenario.ts";
import type { ComparisonOptions } from "../sim/scenario.ts";
import type { SteadyOptions } from "../sim/guest.ts";
import { lastValue, outputFormat, parseArgs, type ParsedArgs } from "./args.ts";
import { CliError } from "./error.ts";
import { parseSize } from "./size.ts";

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
/** Template regions are aligned to this (the local images' cluster size). */
const GRANULE = 64 * KIB;
/** The smallest and largest template: the simulated local disks live in memory. */
const MIN_SIZE = 1 * MIB;
const MAX_SIZE = 16 * GIB;

/** The exit code of a usage error. */
export const USAGE_EXIT_CODE = 2;

/** The default picture file. */
export const DEFAULT_SVG_PATH = "./qedstream-demo.svg";

/** What `--real-time` scales down when the option is not given explicitly. */
export const REAL_TIME_DEFAULTS = { size: 256 * MIB, durationMs: 3000 } as const;

const REAL_TIME_SCALE = `${REAL_TIME_DEFAULTS.size / MIB} MiB template and ` +
  `${REAL_TIME_DEFAULTS.durationMs / 1000} s`;

/** `qedstream demo --help`. */
export const DEMO_USAGE = `Usage: qedstream demo [OPTIONS]

Provision one virtual machine from a remote template repository in the ways
the seed compares, on a simulated guest, and measure them:
  1  copy the template to local storage, then boot
  2  boot at once from a local overlay backed by the remote template (forever)
  3  boot at once and stream the template into the overlay in parallel
  3b the same, driven one chunk at a time by a management loop
  3w the same, streaming first the working set recorded on an earlier boot
  N  N machines streaming from the one repository at once
Prints the comparison table, writes an SVG timeline, and verifies every
local image (exit 1 if a verification fails). Simulated on a virtual clock:
minutes of simulated time take seconds, and a seed repeats exactly.

Options:
  --size SIZE           template's virtual size, qemu suffixes K M G (powers of
                        1024). Default 4G: a 64 MiB boot region and 8 % data.
  --rtt MS              round-trip time to the repository in ms. Default 20.
  --bandwidth RATE      the repository's link in bits per second; suffixes
                        k M G T are powers of 1000 (1G = 1 Gbit/s =
                        125,000,000 bytes/s). Default 1G.
  --machines N          machines of the fleet scenario (1-64). Default 3.
  --seed N              seed of the template, the guests and the workload. Default 1.
  --scenarios LIST      comma-separated, from copy,overlay,stream,managed,
                        working-set,fleet. Default: all, in that order. With
                        stream and working-set the report says how much sooner
                        the working set made the boot.
  --guest-first         streaming rows serve guest reads that miss the overlay
                        ahead of the stream's copies (block/guest_first.ts).
  --read-fraction F     share of the guest's steady I/O that reads (0-1). Default 0.7.
  --think-ms MS         the guest's think time before each steady I/O. Default 5.
  --duration D          length of the guest's steady phase: seconds, or with a
                        unit ms, s or m (500ms, 20s, 2m). Default 20s.
  --svg PATH            where to write the timeline. Default ${DEFAULT_SVG_PATH}.
  --output human|json   json: the results as one JSON document on standard
                        output, and nothing else there. Default human.
  --real-time           run on the system clock against real image files in a
                        temporary folder (removed at the end). Scaled down by
                        default to a ${REAL_TIME_SCALE} of steady guest work,
                        so it ends in about half a minute; --size and
                        --duration override that.
  --real                run option 3 against a real NBD repository: nbdkit,
                        started on a Unix socket in a temporary folder with
                        its delay (--rtt) and rate (--bandwidth) filters, the
                        overlay backed by nbd+unix:///template?socket=...;
                        on the system clock, scaled down like --real-time.
                        Needs nbdkit (exit 2 without it).
  --help                show this help.

Progress goes to standard error: a bar on a terminal, plain lines otherwise.
`;

/** The demo's settings, checked. */
export interface DemoOptions {
  /** Print the help and stop. */
  help: boolean;
  /** Run on the system clock against real files. */
  realTime: boolean;
  /** Run option 3 against a real nbdkit repository (implies the system clock). */
  real: boolean;
  /** `human` (table) or `json` (one document). */
  output: "human" | "json";
  /** Where the SVG goes. */
  svgPath: string;
  /** What to simulate (clock, storage and progress are added by the command). */
  comparison: ComparisonOptions;
  /** The guest workload as asked (explicit options and real-time defaults only). */
  workload: SteadyOptions;
}

const LONG_VALUES = [
  "size",
  "rtt",
  "bandwidth",
  "machines",
  "seed",
  "scenarios",
  "read-fraction",
  "think-ms",
  "duration",
  "svg",
  "output",
];

/** A usage error: one line, exit code 2. */
export function usageError(message: string): CliError {
  return new CliError(`demo: ${message} (try 'qedstream demo --help')`, {
    exitCode: USAGE_EXIT_CODE,
  });
}

/**
 * A bit rate in bits per second: a number with an optional fraction and an
 * optional decimal suffix k, M, G or T (case-insensitive, powers of 1000, as
 * link rates are quoted). Returns `null` when the text is not a rate.
 *
 * @example
 * ```ts
 * import { parseBitRate } from "./demo_options.ts";
 * console.log(parseBitRate("1G"), parseBitRate("2.5M"), parseBitRate("fast")); // 1000000000 2500000 null
 * ```
 */
export function parseBitRate(text: string): number | null {
  const m = /^([0-9]+(?:\.[0-9]+)?)([kKmMgGtT]?)$/.exec(text.trim());
  if (!m) return null;
  const power = m[2] === "" ? 0 : "kmgt".indexOf(m[2]!.toLowerCase()) + 1;
  return Math.round(Number(m[1]) * 1000 ** power);
}

/**
 * A duration in ms: seconds when bare (`20`, `1.5`), else with a unit `ms`,
 * `s` or `m`. Returns `null` when the text is not a duration.
 *
 * @example
 * ```ts
 * import { parseDuration } from "./demo_options.ts";
 * console.log(parseDuration("20"), parseDuration("500ms"), parseDuration("2m")); // 20000 500 120000
 * ```
 */
export function parseDuration(text: string): number | null {
  const m = /^([0-9]+(?:\.[0-9]+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) return null;
  const unit = m[2] === "ms" ? 1 : m[2] === "m" ? 60_000 : 1000;
  return Number(m[1]) * unit;
}

function numberOption(
  args: ParsedArgs,
  name: string,
  range: { min: number; max: number; integer?: boolean },
): number | undefined {
  const text = lastValue(args, name);
  if (text === undefined) return undefined;
  const value = /^\s*[0-9]+(\.[0-9]+)?\s*$/.test(text) ? Number(text) : NaN;
  const kind = range.integer ? "an integer" : "a number";
  if (!Number.isFinite(value) || (range.integer && !Number.isInteger(value))) {
    throw usageError(`--${name} must be ${kind} from ${range.min} to ${range.max}, not '${text}'`);
  }
  if (value < range.min || value > range.max) {
    throw usageError(`--${name} must be ${kind} from ${range.min} to ${range.max}, not '${text}'`);
  }
  return value;
}

function sizeOption(args: ParsedArgs): number | undefined {
  const text = lastValue(args, "size");
  if (text === undefined) return undefined;
  const size = parseSize(text);
  if (size === null) throw usageError(`--size: invalid size '${text}' (use e.g. 4G, 512M)`);
  if (size < BigInt(MIN_SIZE) || size > BigInt(MAX_SIZE)) {
    throw usageError(`--size must be from 1M to 16G (the simulated disks live in memory)`);
  }
  if (size % BigInt(GRANULE) !== 0n) throw usageError(`--size must be a multiple of 64K`);
  return Number(size);
}

function bandwidthOption(args: ParsedArgs): number | undefined {
  const text = lastValue(args, "bandwidth");
  if (text === undefined) return undefined;
  const bits = parseBitRate(text);
  if (bits === null) {
    throw usageError(`--bandwidth: invalid rate '${text}' (bits per second, e.g. 1G, 100M)`);
  }
  if (bits < 1e5 || bits > 1e12) throw usageError(`--bandwidth must be from 100k to 1T bits/s`);
  return bits / 8;
}

function durationOption(args: ParsedArgs): number | undefined {
  const text = lastValue(args, "duration");
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === null) throw usageError(`--duration: invalid duration '${text}' (e.g. 20, 500ms, 2m)`);
  if (ms > 600_000) throw usageError(`--duration must be at most 10m`);
  return ms;
}

function scenariosOption(args: ParsedArgs): ScenarioKind[] | undefined {
  const text = lastValue(args, "scenarios");
  if (text === undefined) return undefined;
  const kinds: ScenarioKind[] = [];
  for (const word of text.split(",").map((w) => w.trim()).filter((w) => w !== "")) {
    const kind = SCENARIO_KINDS.find((k) => k === word);
    if (kind === undefined) {
      throw usageError(`--scenarios: unknown scenario '${word}' (use ${SCENARIO_KINDS.join(",")})`);
    }
    if (!kinds.includes(kind)) kinds.push(kind);
  }
  if (kinds.length === 0) throw usageError(`--scenarios needs at least one scenario`);
  return kinds;
}

/**
 * The template's boot region and the guest's boot reads for a template of
 * `size` bytes: the simulator's defaults (64 MiB and 32 MiB) at 512 MiB and
 * above, an eighth and a sixteenth of the disk below that.
 */
export function bootLayout(size: number): { templateBoot: number; guestBoot: number } {
  const align = (n: number) => Math.max(GRANULE, Math.floor(n / GRANULE) * GRANULE);
  const templateBoot = Math.min(64 * MIB, align(size / 8));
  return { templateBoot, guestBoot: Math.min(32 * MIB, align(templateBoot / 2)) };
}

/**
 * Parses the demo's command line.
 *
 * @throws {CliError} with exit code 2 for anything it does not accept.
 *
 * @example
 * ```ts
 * import { parseDemoOptions } from "./demo_options.ts";
 * const o = parseDemoOptions(["--size", "1G", "--bandwidth", "100M", "--scenarios", "copy,stream"]);
 * console.log(o.comparison.template?.size, o.comparison.bandwidth, o.comparison.scenarios);
 * // 1073741824 12500000 ["copy", "stream"]
 * ```
 */
export function parseDemoOptions(argv: readonly string[]): DemoOptions {
  let args: ParsedArgs;
  let output: "human" | "json";
  try {
    args = parseArgs(argv, {
      shortFlags: "h",
      longValues: LONG_VALUES,
      longFlags: ["real-time", "real", "guest-first", "help"],
    });
    output = outputFormat(args);
  } catch (e) {
    if (e instanceof CliError) throw usageError(e.message);
    throw e;
  }
  const help = args.flags.has("help") || args.flags.has("h");
  if (args.operands.length > 0) throw usageError(`unexpected argument '${args.operands[0]}'`);
  const real = args.flags.has("real");
  const realTime = args.flags.has("real-time") || real;
  const svgPath = lastValue(args, "svg") ?? DEFAULT_SVG_PATH;
  if (svgPath === "") throw usageError(`--svg needs a file name`);

  const size = sizeOption(args) ?? (realTime ? REAL_TIME_DEFAULTS.size : 4 * GIB);
  const { templateBoot, guestBoot } = bootLayout(size);
  const workload: SteadyOptions = {};
  const durationMs = durationOption(args) ?? (realTime ? REAL_TIME_DEFAULTS.durationMs : undefined);
  if (durationMs !== undefined) workload.durationMs = durationMs;
  const readFraction = numberOption(args, "read-fraction", { min: 0, max: 1 });
  if (readFraction !== undefined) workload.readFraction = readFraction;
  const thinkMs = numberOption(args, "think-ms", { min: 0, max: 60_000 });
  if (thinkMs !== undefined) workload.thinkMs = thinkMs;

  const comparison: ComparisonOptions = {
    template: { size, bootRegionLength: templateBoot },
    guest: { boot: { regionLength: guestBoot }, steady: workload },
  };
  const seed = numberOption(args, "seed", { min: 0, max: 2 ** 32 - 1, integer: true });
  if (seed !== undefined) comparison.seed = seed;
  const rttMs = numberOption(args, "rtt", { min: 0, max: 10_000 });
  if (rttMs !== undefined) comparison.rttMs = rttMs;
  const bandwidth = bandwidthOption(args);
  if (bandwidth !== undefined) comparison.bandwidth = bandwidth;
  const machines = numberOption(args, "machines", { min: 1, max: 64, integer: true });
  if (machines !== undefined) comparison.machines = machines;
  const scenarios = scenariosOption(args);
  if (scenarios !== undefined) comparison.scenarios = scenarios;
  if (args.flags.has("guest-first")) comparison.stream = { guestFirst: true };
  return { help, realTime, real, output, svgPath, comparison, workload: { ...workload } };
}
