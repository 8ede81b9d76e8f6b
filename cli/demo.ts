/**
 * `qedstream demo`: the seed's provisioning comparison, measured on a
 * simulated guest — copy then boot, overlay on the remote, boot and stream,
 * managed one-chunk streaming, and a fleet — with a live progress display,
 * the comparison table, an SVG timeline and the final verification.
 *
 * ```
 * deno task demo
 * deno task demo --size 1G --rtt 50 --bandwidth 100M --output json
 * deno task demo --real-time
 * deno task demo --real          # option 3 against an nbdkit repository it starts itself
 * ```
 *
 * Exit 0 when every image verified, 1 when one did not, 2 for bad options.
 *
 * @module
 */

import { join, resolve } from "node:path";
import { type Clock, systemClock } from "../io/clock.ts";
import { FileStorage } from "../io/file_storage.ts";
import {
  type ComparisonOptions,
  type ComparisonProgress,
  type ComparisonResult,
  comparisonSvg,
  formatBytes,
  formatComparisonTable,
  formatDuration,
  type MachineResult,
  runComparison,
} from "../sim/scenario.ts";
import {
  DEMO_USAGE,
  type DemoOptions,
  parseDemoOptions,
  REAL_TIME_DEFAULTS,
} from "./demo_options.ts";
import { runRealDemo } from "./demo_real.ts";
import { CliError, describeError } from "./error.ts";
import type { CliOutput } from "./output.ts";
import { formatProgressBar, RateMeter } from "./progress.ts";

/** How often the terminal bar is redrawn, in wall-clock ms. */
const REDRAW_MS = 100;

/** What the caller of {@linkcode runDemo} may inject (tests; the command uses the process's). */
export interface DemoContext {
  /** Draw a live bar on `out.stderr` rather than plain lines. Default: whether standard error is a terminal. */
  terminal?: boolean;
  /** Terminal width for the bar. Default: the console's, else 100. */
  columns?: number;
  /** Wall clock for redraw pacing and the final timing. Default: the system clock. */
  clock?: Clock;
}

/** The `demo` verb. */
export function demoCommand(
  argv: readonly string[],
  out: CliOutput,
  context: DemoContext = {},
): Promise<number> {
  const options = parseDemoOptions(argv);
  if (options.help) {
    out.stdout(DEMO_USAGE);
    return Promise.resolve(0);
  }
  if (options.real) return runRealDemo(options, out);
  return runDemo(options, out, context);
}

/**
 * Runs the comparison described by `options`, prints the table (or the JSON
 * document), writes the SVG and reports the verification; returns the exit
 * code (0 verified, 1 not).
 */
export async function runDemo(
  options: DemoOptions,
  out: CliOutput,
  context: DemoContext = {},
): Promise<number> {
  const wall = context.clock ?? systemClock;
  const started = wall.now();
  const terminal = context.terminal ?? safeIsTerminal();
  const progress = new DemoProgress(out, {
    terminal,
    columns: context.columns ?? consoleColumns(),
    clock: wall,
    unit: options.realTime ? "" : " simulated",
  });
  const comparison: ComparisonOptions = {
    ...options.comparison,
    onProgress: (p) => progress.update(p),
  };
  let folder: string | undefined;
  if (options.realTime) {
    folder = await Deno.makeTempDir({ prefix: "qedstream-demo-" });
    const dir = folder;
    comparison.clock = () => systemClock;
    comparison.createStorage = (scenario, machine) =>
      FileStorage.open(join(dir, `${scenario}-${machine}.qed`), { create: true, truncate: true });
  }
  out.stderr(`demo: ${introduction(options, folder)}\n`);
  let result: ComparisonResult;
  try {
    result = await runComparison(comparison);
  } finally {
    progress.finish();
    if (folder !== undefined) await Deno.remove(folder, { recursive: true }).catch(() => {});
  }

  const svg = comparisonSvg(result);
  try {
    await Deno.writeTextFile(options.svgPath, svg);
  } catch (e) {
    throw new CliError(`Could not write '${options.svgPath}': ${describeError(e)}`, { cause: e });
  }
  const wroteSvg = `SVG timeline (local bytes over time for each option, and guest I/O latency) ` +
    `written to ${resolve(options.svgPath)}`;
  if (options.output === "json") {
    out.stdout(JSON.stringify(demoDocument(result, options), null, 2) + "\n");
    out.stderr(`demo: ${wroteSvg}\n`);
  } else {
    out.stdout(`${formatComparisonTable(result)}\n\n${wroteSvg}\n\n`);
    out.stdout(`${formatVerification(result)}\n`);
  }
  const seconds = ((wall.now() - started) / 1000).toFixed(1);
  out.stderr(
    `demo: ${result.verified ? "done" : "VERIFICATION FAILED"} in ${seconds} s of wall time\n`,
  );
  return result.verified ? 0 : 1;
}

/** The results as the JSON document of `--output json` (the SVG holds the timeline). */
export function demoDocument(
  result: ComparisonResult,
  options: Pick<DemoOptions, "svgPath" | "workload">,
): {
  settings: ComparisonResult["settings"];
  workload: DemoOptions["workload"];
  scenarios: ComparisonResult["scenarios"];
  verified: boolean;
  svg: string;
} {
  return {
    settings: result.settings,
    workload: options.workload,
    scenarios: result.scenarios,
    verified: result.verified,
    svg: options.svgPath,
  };
}

function introduction(options: DemoOptions, folder: string | undefined): string {
  const c = options.comparison;
  const size = formatBytes(c.template?.size ?? 0);
  const rate = ((c.bandwidth ?? 125_000_000) * 8) / 1e9;
  const link = rate >= 1 ? `${+rate.toFixed(2)} Gbit/s` : `${+(rate * 1000).toFixed(2)} Mbit/s`;
  const what = `provisioning from a ${size} sparse template over a ${link} link, ` +
    `RTT ${c.rttMs ?? 20} ms, seed ${c.seed ?? 1}`;
  if (folder === undefined) return `${what}, simulated on a virtual clock`;
  return `${what}, in REAL TIME on the system clock against image files in ${folder} ` +
    `(removed at the end); scaled down by default to a ${formatBytes(REAL_TIME_DEFAULTS.size)} ` +
    `template and ${REAL_TIME_DEFAULTS.durationMs / 1000} s of steady guest work ` +
    `(--size and --duration change that)`;
}

/**
 * The closing report: the streamed image's verification in words, then
 * one line for the whole run.
 */
export function formatVerification(result: ComparisonResult): string {
  const all = result.scenarios.flatMap((s) =>
    s.machines.filter((m) => m.verify).map((m) => ({ scenario: s, machine: m }))
  );
  if (all.length === 0) return "Verification: none ran.";
  const lines: string[] = [];
  const streamed = all.find((x) => x.scenario.kind === "stream") ??
    all.find((x) => x.machine.mode === "stream" || x.machine.mode === "managed");
  if (streamed) {
    lines.push(
      `Verification of the streamed image (${streamed.scenario.label.trim()}, ` +
        `${streamed.machine.name}): ${describeVerify(streamed.machine)}`,
    );
  }
  const bad = all.filter((x) => !x.machine.verify!.ok);
  if (bad.length === 0) {
    const overlay = all.some((x) => x.machine.mode === "overlay");
    lines.push(
      `Verified: all ${all.length} images check clean and read equal to the template plus ` +
        `their guest's writes` +
        (overlay ? "; option 2's overlay still needs the repository, as it always will." : "."),
    );
  } else {
    lines.push(
      `VERIFICATION FAILED for ${bad.length} of ${all.length} images: ` +
        bad.map((x) => `${x.machine.name}: ${x.machine.verify!.problems.join("; ")}`).join(" | "),
    );
  }
  return lines.join("\n");
}

function describeVerify(m: MachineResult): string {
  const v = m.verify!;
  const check = v.checkClean
    ? `check clean (${v.check.corruptions} corruptions, ${v.check.leaks} leaks)`
    : `check NOT clean (${v.check.corruptions} corruptions, ${v.check.leaks} leaks, ` +
      `${v.check.checkErrors} check errors)`;
  const backing = v.independent ? "no backing file" : "STILL NEEDS ITS BACKING FILE";
  const content = v.firstMismatch === undefined
    ? `${formatBytes(v.bytesCompared)} compared, equal to the template plus the guest's ` +
      `${m.guest.writes} writes (${formatBytes(m.guest.bytesWritten)})`
    : `FIRST MISMATCH at byte ${v.firstMismatch}`;
  return `${check}; ${backing}; ${content} — ${v.ok ? "OK" : "FAILED"}`;
}

/**
 * One progress line of the terminal display: `[i/n] label`, the scenario's
 * elapsed time (simulated unless `unit` is empty), then the bar with local
 * bytes / template bytes, the rate and the ETA in that time; cut to `columns`.
 *
 * @example
 * ```ts
 * import { formatDemoProgress } from "./demo.ts";
 * const line = formatDemoProgress({
 *   scenario: "stream", label: "3  boot + stream", index: 2, count: 5,
 *   elapsedMs: 1500, localBytes: 512, templateBytes: 1024,
 * }, 0, 200);
 * console.log(line.startsWith("[3/5] 3  boot + stream")); // true
 * ```
 */
export function formatDemoProgress(
  p: ComparisonProgress,
  rate: number,
  columns: number,
  unit = " simulated",
): string {
  const bar = formatProgressBar(
    { done: p.localBytes, total: p.templateBytes, rate, elapsedMs: p.elapsedMs },
    20,
  );
  const clock = unit === "" ? "t" : "sim";
  const line = `[${p.index + 1}/${p.count}] ${p.label.padEnd(25)} ` +
    `${clock} ${(p.elapsedMs / 1000).toFixed(1).padStart(5)} s  ${bar}`;
  return line.length < columns ? line : line.slice(0, Math.max(0, columns - 1));
}

/** The progress display: a bar redrawn in place on a terminal, a line per scenario start and end otherwise. */
class DemoProgress {
  #out: CliOutput;
  #terminal: boolean;
  #columns: number;
  #clock: Clock;
  #unit: string;
  #last: ComparisonProgress | undefined;
  #meter: RateMeter | undefined;
  #drawnAt = -Infinity;

  constructor(
    out: CliOutput,
    options: { terminal: boolean; columns: number; clock: Clock; unit: string },
  ) {
    this.#out = out;
    this.#terminal = options.terminal;
    this.#columns = options.columns;
    this.#clock = options.clock;
    this.#unit = options.unit;
  }

  update(p: ComparisonProgress): void {
    const previous = this.#last;
    if (previous === undefined || previous.index !== p.index) {
      if (previous) this.#end(previous);
      this.#meter = new RateMeter({ at: p.elapsedMs, done: p.localBytes });
      if (!this.#terminal) {
        this.#out.stderr(`demo: [${p.index + 1}/${p.count}] ${p.label.trim()}: started\n`);
      }
    } else {
      this.#meter?.add({ at: p.elapsedMs, done: p.localBytes });
    }
    this.#last = p;
    if (this.#terminal) {
      const now = this.#clock.now();
      if (now - this.#drawnAt >= REDRAW_MS || previous?.index !== p.index) {
        this.#drawnAt = now;
        this.#draw(p, false);
      }
    }
  }

  finish(): void {
    if (this.#last) this.#end(this.#last);
    this.#last = undefined;
  }

  #end(p: ComparisonProgress): void {
    if (this.#terminal) {
      this.#draw(p, true);
      return;
    }
    this.#out.stderr(
      `demo: [${p.index + 1}/${p.count}] ${p.label.trim()}: finished at ` +
        `${formatDuration(p.elapsedMs)}${this.#unit}, ${formatBytes(p.localBytes)} local ` +
        `of ${formatBytes(p.templateBytes)} template data\n`,
    );
  }

  #draw(p: ComparisonProgress, final: boolean): void {
    const line = formatDemoProgress(p, this.#meter?.rate() ?? 0, this.#columns, this.#unit);
    this.#out.stderr(`\r${line}\x1b[K${final ? "\n" : ""}`);
  }
}

function safeIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

function consoleColumns(): number {
  try {
    const columns = Deno.consoleSize().columns;
    // A pseudo-terminal without a size reports 0 columns.
    return columns >= 40 ? columns : 100;
  } catch {
    return 100;
  }
}
