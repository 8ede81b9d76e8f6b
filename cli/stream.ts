/**
 * `qedstream stream`: streams an overlay offline until it no longer needs
 * its backing file (or, with `--base`, until it needs only that one), with
 * the block layer's stream job — qemu's `block-stream` run from the shell.
 *
 * ```
 * qedstream stream [--speed BYTES/s] [--base FILE] [--chunk SIZE] [--parallel N]
 *                  [--on-error report|ignore|stop|enospc|auto] [--output json]
 *                  [--working-set FILE] [--manifest FILE] FILE
 * ```
 *
 * Beyond qemu: `--working-set FILE` copies the ranges of a working-set file
 * (recorded while a guest booted from the same template, see
 * `block/working_set.ts` and QMP's `__com.qedstream_record-working-set`)
 * first, in their order, then the rest; `--manifest FILE` (made by
 * `qedstream manifest`) verifies every chunk copied, a mismatch being a read
 * error of that chunk under `--on-error`, reported with its offset. Both
 * files must belong to the overlay's backing chain (same size and
 * fingerprint), or the command stops before streaming.
 *
 * Sizes (`--speed`, `--chunk`) take qemu's suffixes (`64k`, `1.5M`, `1G`).
 * The defaults are 2 MiB chunks, 4 in flight ({@linkcode CLI_STREAM_CHUNK},
 * {@linkcode CLI_STREAM_PARALLEL}), chosen by measurement for local files;
 * `--chunk 512k --parallel 1` is qemu's loop exactly.
 * On a terminal a progress bar on standard error shows bytes done and in
 * all, the rate over the last 3 s and the time left. With `--output json`,
 * standard output carries one JSON object per line instead:
 *
 * - `{"event":"start","file","len","base","speed","chunk","parallel"}` once;
 * - `{"event":"progress","offset","len","rate","eta","elapsed"}` about
 *   every 500 ms while the offset moves: `offset` counts bytes copied or
 *   skipped (as qemu's job `offset`), `rate` is bytes/s over the last 3 s,
 *   `eta` seconds left (`null` while unknown), `elapsed` seconds;
 * - one final `{"event":"completed"|"cancelled"|"failed","offset","len",
 *   "elapsed","rate","backing"}` where `elapsed` runs from the job's start
 *   to the image flushed and closed, `backing` is the backing file left in
 *   the header (`null` once independent) and `rate` the average bytes/s,
 *   plus `"error"` for a failure.
 *
 * Ctrl-C (SIGINT) or SIGTERM cancels the job: the chunks in flight finish,
 * the image is flushed and closed with its backing link intact (every
 * copied cluster equals what the backing holds, so it reads the same), and
 * the command exits 130 after one line saying a rerun continues — a rerun
 * skips every cluster already copied. The offline command has nobody to
 * resume a job that the `stop` (or `enospc`, on ENOSPC) policy paused, so it
 * ends such a job the same consistent way and exits 1.
 *
 * @module
 */

import { dirname, isAbsolute, relative } from "node:path";
import { JobRegistry } from "../block/job_registry.ts";
import type { JobEvent, OnErrorPolicy } from "../block/job.ts";
import type { BlockNode } from "../block/node.ts";
import { type OpenedChain, openNodeChain } from "../block/open_chain.ts";
import { startStream, type StreamJob } from "../block/stream_job.ts";
import { ManifestVerifier } from "../block/manifest.ts";
import { sameFingerprint, templateFingerprint } from "../block/template_fingerprint.ts";
import { type ByteRange, checkWorkingSetTemplate } from "../block/working_set.ts";
import { type Clock, systemClock } from "../io/clock.ts";
import { loadManifestFile, loadWorkingSetFile } from "./_extras_files.ts";
import { lastValue, outputFormat, parseArgs } from "./args.ts";
import { CliError, describeError, openFailure } from "./error.ts";
import type { CliOutput } from "./output.ts";
import { formatDuration, formatProgressBar, progressLine, RateMeter } from "./progress.ts";
import { formatIoSize, parseSize } from "./size.ts";

/** The exit code of a stream cancelled by a signal (128 + SIGINT, as shells report it). */
export const CANCELLED_EXIT_CODE = 130;

/**
 * The offline command's chunk size: 2 MiB. qemu's 512 KiB (the job's default,
 * kept for `block-stream`) spends more on per-chunk work than on copying when
 * the source is a local file; `bench/stream_compare.ts` on a 1 GiB template
 * (2 cores, ext4, median of 5) measured the job at 0.74 s with 2 MiB × 4
 * against 0.81 s with 512 KiB × 8; 1 MiB × 8, 4 MiB × 4 and 8 MiB × 2 were no
 * faster in interleaved rounds.
 */
export const CLI_STREAM_CHUNK = 2 * 1024 * 1024;

/** The offline command's chunks in flight: 4 (2 and 8 were slower in the same measurement). */
export const CLI_STREAM_PARALLEL = 4;

/**
 * The offline command's write-behind on the overlay: 64 MiB. The stream
 * writes every byte of the image and flushes at the end; a background
 * flush every 64 MiB lets the disk write while the copy goes on, so the
 * final flush finds little left. Measured (1 GiB, 5 interleaved rounds,
 * 2 cores, ext4 on virtio): 1.08–1.11 s without, 0.75–0.91 s with 16, 32
 * or 64 MiB; 64 MiB was the fastest by a little.
 */
export const STREAM_WRITE_BEHIND = 64 * 1024 * 1024;

/** How often the progress is redrawn on a terminal, in ms. */
const BAR_INTERVAL_MS = 100;
/** How often a JSON progress line is written, in ms. */
const JSON_INTERVAL_MS = 500;

const ON_ERROR_POLICIES: readonly OnErrorPolicy[] = ["report", "ignore", "stop", "enospc", "auto"];

/** What `stream` was asked to do. */
export interface StreamCommandOptions {
  /** The overlay to stream. */
  file: string;
  /** Bytes per second; 0 = unlimited. */
  speed: number;
  /** Stop at this backing file (partial stream); the whole chain when absent. */
  base?: string;
  /** Chunk size in bytes. Default {@linkcode CLI_STREAM_CHUNK}. */
  chunkSize?: number;
  /** Chunks in flight. Default {@linkcode CLI_STREAM_PARALLEL}. */
  parallel?: number;
  /** The error policy. */
  onError: OnErrorPolicy;
  /** `human` (bar on a terminal, summary line) or `json` (JSON lines). */
  output: "human" | "json";
  /** A working-set file: its ranges are copied first. */
  workingSet?: string;
  /** A checksum manifest: every copied chunk is verified. */
  manifest?: string;
}

function sizeOption(args: ReturnType<typeof parseArgs>, name: string): number | undefined {
  const text = lastValue(args, name);
  if (text === undefined) return undefined;
  const value = parseSize(text);
  if (value === null || value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CliError(`Invalid --${name} value '${text}': expected a size such as 64k or 1M`);
  }
  return Number(value);
}

/**
 * Reads `stream`'s command line.
 *
 * @throws {CliError} for a missing file, an unknown option or a bad value.
 *
 * @example
 * ```ts
 * import { parseStreamArgs } from "./stream.ts";
 * console.log(parseStreamArgs(["--speed", "1M", "ov.qed"]).speed); // 1048576
 * ```
 */
export function parseStreamArgs(argv: readonly string[]): StreamCommandOptions {
  const args = parseArgs(argv, {
    longValues: [
      "speed",
      "base",
      "chunk",
      "parallel",
      "on-error",
      "output",
      "working-set",
      "manifest",
    ],
  });
  const [file, extra] = args.operands;
  if (file === undefined) throw new CliError("Expecting one image file name");
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`);
  const onError = lastValue(args, "on-error") ?? "report";
  if (!(ON_ERROR_POLICIES as readonly string[]).includes(onError)) {
    throw new CliError(
      `Invalid --on-error value '${onError}': expected ${ON_ERROR_POLICIES.join(", ")}`,
    );
  }
  const options: StreamCommandOptions = {
    file,
    speed: sizeOption(args, "speed") ?? 0,
    onError: onError as OnErrorPolicy,
    output: outputFormat(args),
  };
  const base = lastValue(args, "base");
  if (base !== undefined) options.base = base;
  const workingSet = lastValue(args, "working-set");
  if (workingSet !== undefined) options.workingSet = workingSet;
  const manifest = lastValue(args, "manifest");
  if (manifest !== undefined) options.manifest = manifest;
  const chunk = sizeOption(args, "chunk");
  if (chunk !== undefined) {
    if (chunk <= 0 || chunk % 512 !== 0) {
      throw new CliError(`Invalid --chunk value '${chunk}': expected a multiple of 512`);
    }
    options.chunkSize = chunk;
  }
  const parallel = lastValue(args, "parallel");
  if (parallel !== undefined) {
    const n = /^[0-9]+$/.test(parallel) ? Number(parallel) : NaN;
    if (!(n >= 1 && n <= 1024)) {
      throw new CliError(`Invalid --parallel value '${parallel}': expected 1 to 1024`);
    }
    options.parallel = n;
  }
  return options;
}

async function realpathOrSelf(path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch {
    return path;
  }
}

/** The node of the chain below the top that `base` names, by the name as opened or by the file. */
async function findBase(chain: OpenedChain, base: string): Promise<BlockNode> {
  const below = chain.nodes.slice(1);
  const byName = below.find((n) => n.filename === base);
  if (byName) return byName;
  const real = await realpathOrSelf(base);
  for (const node of below) if (await realpathOrSelf(node.filename) === real) return node;
  throw new CliError(`Can't find '${base}' in the backing chain`);
}

/**
 * The name recorded for the new backing file: the base's path as the image
 * above it named it when that name was absolute, else relative to the
 * overlay's folder, as `qemu-img create -b` users write it (qemu's
 * `block-stream` records the path it opened instead).
 */
function backingNameFor(chain: OpenedChain, top: string, base: BlockNode): string {
  const above = chain.nodes[chain.nodes.indexOf(base) - 1];
  const stored = above ? storedBackingName(above) : null;
  if (stored !== null && isAbsolute(stored)) return stored;
  return relative(dirname(top), base.filename) || base.filename;
}

/** What the caller of {@linkcode runStream} may inject (tests; the command uses the process's). */
export interface StreamRunContext {
  /** Cancels the stream when aborted (the command wires SIGINT and SIGTERM to it). */
  signal?: AbortSignal;
  /** Draw the progress bar on `out.stderr`. Default: whether standard error is a terminal. */
  terminal?: boolean;
  /** Clock for the rate and the redraw timer. Default: the system clock. */
  clock?: Clock;
}

/** How a stream ended. */
type Outcome = "completed" | "cancelled" | "stopped" | "failed";

/**
 * Runs the stream described by `options`, printing to `out`; returns the
 * exit code (0 done, 130 cancelled, 1 failed).
 */
export async function runStream(
  options: StreamCommandOptions,
  out: CliOutput,
  context: StreamRunContext = {},
): Promise<number> {
  const clock = context.clock ?? systemClock;
  const json = options.output === "json";
  const terminal = context.terminal ?? safeIsTerminal();
  let chain: OpenedChain;
  try {
    chain = await openNodeChain(options.file, {
      readOnly: false,
      nodeName: "top",
      writeBehind: STREAM_WRITE_BEHIND,
    });
  } catch (e) {
    throw openFailure(options.file, e);
  }
  let job: StreamJob | undefined;
  let closed = false;
  const close = () => {
    if (closed) return Promise.resolve();
    closed = true;
    return chain.close();
  };
  try {
    const base = options.base === undefined ? undefined : await findBase(chain, options.base);
    const extras = await streamExtras(chain, options);
    const jobs = new JobRegistry({ clock });
    let stoppedByError = false;
    jobs.on((event: JobEvent, j) => {
      if (event.event === "BLOCK_JOB_ERROR" && event.data.action === "stop" && !stoppedByError) {
        stoppedByError = true;
        // Nobody can resume it offline: end it, consistent, as a cancel would.
        queueMicrotask(() => j.cancel({ force: true }));
      }
    });
    job = startStream(jobs, chain.top, {
      jobId: "stream0",
      speed: options.speed,
      onError: options.onError,
      ...(base ? { baseNode: base, backingFile: backingNameFor(chain, options.file, base) } : {}),
      chunkSize: options.chunkSize ?? CLI_STREAM_CHUNK,
      parallel: options.parallel ?? CLI_STREAM_PARALLEL,
      ...extras,
    });
    const running = job;
    const cancel = () => {
      if (running.status !== "concluded" && running.status !== "null" && !running.cancelled) {
        try {
          running.cancel({ force: true });
        } catch {
          // Too late to cancel (it is finalizing): let it finish.
        }
      }
    };
    if (context.signal?.aborted) cancel();
    context.signal?.addEventListener("abort", cancel, { once: true });

    const started = clock.now();
    const meter = new RateMeter({ at: started, done: 0 });
    if (json) {
      out.stdout(
        JSON.stringify({
          event: "start",
          file: options.file,
          len: chain.top.size,
          base: base?.filename ?? null,
          speed: options.speed,
          chunk: running.chunkSize,
          parallel: running.parallel,
        }) + "\n",
      );
    }
    let lastJson = -1;
    const report = (final: boolean) => {
      const now = clock.now();
      meter.add({ at: now, done: running.currentProgress });
      const state = {
        done: running.currentProgress,
        total: running.totalProgress || chain.top.size,
        rate: meter.rate(),
        elapsedMs: now - started,
      };
      if (terminal && !json) out.stderr(`\r${formatProgressBar(state)}\x1b[K${final ? "\n" : ""}`);
      if (json && !final && state.done !== lastJson) {
        lastJson = state.done;
        out.stdout(JSON.stringify(progressLine(state)) + "\n");
      }
    };
    const stopTicks = new AbortController();
    const ticker = (async () => {
      const interval = json ? JSON_INTERVAL_MS : BAR_INTERVAL_MS;
      while (!stopTicks.signal.aborted) {
        await clock.sleep(interval, stopTicks.signal).catch(() => {});
        if (!stopTicks.signal.aborted && (terminal || json)) report(false);
      }
    })();
    await running.concluded;
    stopTicks.abort();
    await ticker;
    context.signal?.removeEventListener("abort", cancel);
    if (terminal || json) report(true);

    const outcome: Outcome = stoppedByError
      ? "stopped"
      : running.cancelled
      ? "cancelled"
      : running.error !== undefined
      ? "failed"
      : "completed";
    const done = running.currentProgress;
    const len = running.totalProgress || chain.top.size;
    const backingName = storedBackingName(chain.top);
    const mismatch = running.checksumMismatch;
    job = undefined;
    // Close (flush, clear the need-check bit) before reporting: the summary promises a consistent file.
    await close();
    const elapsedMs = clock.now() - started;
    if (json) {
      out.stdout(
        JSON.stringify({
          event: outcome === "stopped" ? "failed" : outcome,
          offset: done,
          len,
          elapsed: Math.round(elapsedMs) / 1000,
          rate: elapsedMs > 0 ? Math.round((done * 1000) / elapsedMs) : 0,
          backing: backingName,
          ...(outcome === "failed" ? { error: running.error } : {}),
          ...(mismatch ? { mismatch: { offset: mismatch.offset, desc: mismatch.message } } : {}),
          ...(outcome === "stopped" ? { error: "stopped by an I/O error" } : {}),
        }) + "\n",
      );
    }
    const where = `at ${percentOf(done, len)} (${formatIoSize(done)} of ${formatIoSize(len)})`;
    const rerun = `'${options.file}' is consistent and still backed by ` +
      `'${backingName ?? ""}', and a rerun continues`;
    switch (outcome) {
      case "completed": {
        if (!json) {
          const rate = elapsedMs > 0 ? (len * 1000) / elapsedMs : 0;
          const now = backingName === null
            ? "no longer has a backing file"
            : `is now backed by '${backingName}'`;
          out.stdout(
            `Stream completed: ${formatIoSize(len)} in ${formatElapsed(elapsedMs)} ` +
              `(${formatIoSize(rate)}/s); '${options.file}' ${now}\n`,
          );
        }
        return 0;
      }
      case "cancelled":
        out.stderr(`qedstream: Stream cancelled ${where}; ${rerun}\n`);
        return CANCELLED_EXIT_CODE;
      case "stopped":
        out.stderr(
          `qedstream: Stream stopped by an I/O error ${where}` +
            `${mismatch ? ` (${mismatch.message})` : ""}; ${rerun}\n`,
        );
        return 1;
      default:
        out.stderr(
          `qedstream: Stream failed ${where}: ${running.error}` +
            `${mismatch ? ` (${mismatch.message})` : ""}; ${rerun}\n`,
        );
        return 1;
    }
  } finally {
    if (job) {
      // An exception escaped before the job ended: stop it and wait, so closing does not race it.
      try {
        job.cancel({ force: true });
      } catch { /* already finishing */ }
      await job.concluded;
    }
    await close().catch(() => {});
  }
}

/**
 * The working set and the manifest verifier of `--working-set` and
 * `--manifest`, both checked against the overlay's backing chain.
 */
async function streamExtras(
  chain: OpenedChain,
  options: StreamCommandOptions,
): Promise<{ workingSet?: ByteRange[]; verifier?: ManifestVerifier }> {
  const template = chain.top.backing;
  if (!template) return {};
  const out: { workingSet?: ByteRange[]; verifier?: ManifestVerifier } = {};
  if (options.workingSet !== undefined) {
    const ws = await loadWorkingSetFile(options.workingSet);
    try {
      await checkWorkingSetTemplate(ws, template);
    } catch (e) {
      throw new CliError(`Working set '${options.workingSet}': ${describeError(e)}`, { cause: e });
    }
    out.workingSet = ws.ranges;
  }
  if (options.manifest !== undefined) {
    const m = await loadManifestFile(options.manifest);
    const fingerprint = template.size === m.templateSize
      ? await templateFingerprint(template)
      : undefined;
    if (!fingerprint || !sameFingerprint(fingerprint, m.fingerprint)) {
      throw new CliError(
        `Manifest '${options.manifest}' is not the manifest of the backing chain of '${options.file}'`,
      );
    }
    out.verifier = new ManifestVerifier(m, (offset, buf) => template.read(offset, buf));
  }
  return out;
}

/** The backing file name stored in the top image's header, or `null`. */
function storedBackingName(top: BlockNode): string | null {
  const image = (top as { image?: { backingFile?: string } }).image;
  return image?.backingFile ?? (top.backing ? top.backing.filename : null);
}

/** `2.4 s` under a minute, else `m:ss`. */
function formatElapsed(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : formatDuration(ms / 1000);
}

function percentOf(done: number, total: number): string {
  return `${total > 0 ? ((done * 100) / total).toFixed(1) : "100.0"}%`;
}

function safeIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/**
 * Runs `stream`: parses the command line, cancels on SIGINT or SIGTERM,
 * and returns the exit code.
 */
export async function streamCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  const options = parseStreamArgs(argv);
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  try {
    return await runStream(options, out, { signal: abort.signal });
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(describeError(e), { cause: e });
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
  }
}
