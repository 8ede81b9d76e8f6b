/**
 * Streaming side by side, in one run: a fresh QED overlay of a random raw
 * template streamed into independence by `qedstream stream` and by
 * qemu-storage-daemon 7.2's `block-stream`, and the template copied with
 * `cp`, on local disk in a temporary folder.
 *
 * ```
 * deno task bench:compare                        # 1 GiB, 5 runs of each case
 * deno run -A bench/stream_compare.ts --size 256 --runs 1 --dir /var/tmp
 * ```
 *
 * What is timed:
 * - qedstream: `deno run -A cli.ts stream --output json OVERLAY` as its own
 *   process; the time is the job's own, from its start to the image flushed
 *   (fdatasync) and closed, as the command's final JSON line reports it —
 *   without process start, like the daemon's. The process's wall time and
 *   peak RSS (`/usr/bin/time -f %M`, else `VmHWM` polled) are shown too.
 * - qemu-storage-daemon: from the `block-stream` command to
 *   `BLOCK_JOB_COMPLETED`, over the project's {@linkcode QmpClient}; no
 *   flush is asked (qemu flushes the image only when it is closed).
 * - cp: `cp TEMPLATE COPY` then `sync` (coreutils copies in the kernel with
 *   `copy_file_range`, which a user-space streamer cannot).
 * - For information, qedstream with the job's own defaults (qemu's 512 KiB
 *   chunk, 8 in flight) instead of the command's 2 MiB × 4
 *   (`--no-job-defaults` skips it).
 *
 * Every case starts after a `sync`, with the template in the page cache
 * (it was just written) and, right before it, the page cache warmed to the
 * size it will write (`_warm.ts`: on this VM, memory freed a few seconds
 * earlier has gone back to the host and costs ~2 s/GiB to fault in again,
 * which otherwise decided the ratios by the order of the cases). Each result of qedstream and qemu is checked with
 * `qemu-img compare` against the template and `qemu-img info` (no backing).
 * The ratios are the medians of the per-round ratios (each round runs the
 * cases back to back). Goals (issue 3): qedstream ≤ 0.8 × qemu-storage-daemon,
 * ≤ 1.3 × cp, peak memory ≤ 150 MiB.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { formatMachine, machineInfo } from "./_machine.ts";
import { measuredRun, runOk } from "./_process.ts";
import { qsdBlockStream } from "./_qsd.ts";
import { warmPageCache } from "./_warm.ts";

const MiB = 1024 * 1024;
const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));

interface Options {
  sizeMiB: number;
  runs: number;
  dir?: string;
  keep: boolean;
  /** Extra arguments for `qedstream stream`. */
  streamArgs: string[];
  /** Also time the job's own defaults (`--chunk 512k --parallel 8`), for information. */
  jobDefaults: boolean;
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    sizeMiB: 1024,
    runs: 5,
    keep: false,
    streamArgs: [],
    jobDefaults: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--size") options.sizeMiB = Number(value());
    else if (arg === "--runs") options.runs = Number(value());
    else if (arg === "--dir") options.dir = value();
    else if (arg === "--keep") options.keep = true;
    else if (arg === "--no-job-defaults") options.jobDefaults = false;
    else if (arg === "--stream-arg") options.streamArgs.push(value());
    else {
      throw new Error(
        `unknown option ${arg} (use --size MiB, --runs N, --dir PATH, --keep, --stream-arg ARG, --no-job-defaults)`,
      );
    }
  }
  if (!(options.sizeMiB > 0) || !Number.isInteger(options.runs) || options.runs < 1) {
    throw new Error("bad --size or --runs");
  }
  return options;
}

/** Writes `sizeMiB` MiB of random data, 1 MiB at a time. */
async function writeTemplate(path: string, sizeMiB: number): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const buf = new Uint8Array(MiB);
    for (let i = 0; i < sizeMiB; i++) {
      // getRandomValues fills at most 64 KiB per call.
      for (let o = 0; o < MiB; o += 65536) crypto.getRandomValues(buf.subarray(o, o + 65536));
      let done = 0;
      while (done < buf.length) done += await file.write(buf.subarray(done));
    }
  } finally {
    file.close();
  }
}

async function freshOverlay(dir: string, name: string): Promise<string> {
  const path = join(dir, name);
  await Deno.remove(path).catch(() => {});
  await runOk(
    "qemu-img",
    ["create", "-q", "-f", "qed", "-b", "template.raw", "-F", "raw", path],
    dir,
  );
  return path;
}

async function verify(overlay: string, template: string): Promise<void> {
  const info = JSON.parse(await runOk("qemu-img", ["info", "--output", "json", overlay]));
  if (info["backing-filename"] !== undefined) {
    throw new Error(`${overlay} still has a backing file: ${info["backing-filename"]}`);
  }
  await runOk("qemu-img", ["compare", "-q", "-f", "qed", "-F", "raw", overlay, template]);
}

async function sync(): Promise<void> {
  await runOk("sync", []);
}

interface QedstreamRun {
  jobMs: number;
  wallMs: number;
  peakRssKiB: number | null;
}

/** The job's own defaults (qemu's 512 KiB chunk, 8 in flight), shown for information. */
const JOB_DEFAULTS = ["--chunk", "512k", "--parallel", "8"];

async function runQedstream(
  dir: string,
  sizeMiB: number,
  streamArgs: string[],
): Promise<QedstreamRun> {
  const overlay = await freshOverlay(dir, "qedstream.qed");
  await sync();
  await warmPageCache(dir, sizeMiB);
  const r = await measuredRun(
    Deno.execPath(),
    ["run", "-A", CLI, "stream", ...streamArgs, "--output", "json", overlay],
    dir,
  );
  if (r.code !== 0) throw new Error(`qedstream stream exited ${r.code}: ${r.stderr}`);
  const last = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
  if (last.event !== "completed") throw new Error(`qedstream stream ended with ${last.event}`);
  await verify(overlay, join(dir, "template.raw"));
  await Deno.remove(overlay);
  return { jobMs: last.elapsed * 1000, wallMs: r.wallMs, peakRssKiB: r.peakRssKiB };
}

async function runQsd(dir: string, sizeMiB: number): Promise<number> {
  const overlay = await freshOverlay(dir, "qsd.qed");
  await sync();
  await warmPageCache(dir, sizeMiB);
  const ms = await qsdBlockStream(overlay, dir);
  await verify(overlay, join(dir, "template.raw"));
  await Deno.remove(overlay);
  return ms;
}

async function runCp(dir: string, sizeMiB: number): Promise<number> {
  const copy = join(dir, "copy.raw");
  await Deno.remove(copy).catch(() => {});
  await sync();
  await warmPageCache(dir, sizeMiB);
  const start = performance.now();
  await runOk("cp", [join(dir, "template.raw"), copy]);
  await sync();
  const ms = performance.now() - start;
  await Deno.remove(copy);
  return ms;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const machine = await machineInfo();
  const dir = await Deno.makeTempDir({
    prefix: "qedstream-bench-",
    ...(options.dir ? { dir: options.dir } : {}),
  });
  const size = options.sizeMiB * MiB;
  console.log(`stream_compare: ${options.sizeMiB} MiB random raw template in ${dir}`);
  console.log(`command: deno run -A bench/stream_compare.ts ${Deno.args.join(" ")}`.trimEnd());
  console.log(
    `qedstream: deno run -A cli.ts stream ${
      [...options.streamArgs, "--output", "json"].join(" ")
    } OVERLAY`,
  );
  console.log(formatMachine(machine));
  try {
    await writeTemplate(join(dir, "template.raw"), options.sizeMiB);
    const q: QedstreamRun[] = [];
    const j: QedstreamRun[] = [];
    const d: number[] = [];
    const c: number[] = [];
    for (let i = 0; i < options.runs; i++) {
      q.push(await runQedstream(dir, options.sizeMiB, options.streamArgs));
      d.push(await runQsd(dir, options.sizeMiB));
      c.push(await runCp(dir, options.sizeMiB));
      if (options.jobDefaults) j.push(await runQedstream(dir, options.sizeMiB, JOB_DEFAULTS));
      const last = q.at(-1)!;
      console.log(
        `run ${i + 1}: qedstream ${(last.jobMs / 1000).toFixed(3)} s (process ${
          (last.wallMs / 1000).toFixed(3)
        } s), qemu-storage-daemon ${(d.at(-1)! / 1000).toFixed(3)} s, cp+sync ${
          (c.at(-1)! / 1000).toFixed(3)
        } s`,
      );
    }
    const qMs = median(q.map((r) => r.jobMs));
    const qWall = median(q.map((r) => r.wallMs));
    const dMs = median(d);
    const cMs = median(c);
    const peaks = q.map((r) => r.peakRssKiB).filter((p): p is number => p !== null);
    const peakMiB = peaks.length ? Math.max(...peaks) / 1024 : NaN;
    const rate = (ms: number) => ((size / MiB) / (ms / 1000)).toFixed(0);
    const widths = [44, 10, 8];
    console.log(`\nmedian of ${options.runs} run(s), ${options.sizeMiB} MiB:`);
    console.log(row(["case", "time (s)", "MiB/s"], widths));
    console.log(row(["qedstream stream (job)", (qMs / 1000).toFixed(3), rate(qMs)], widths));
    console.log(
      row(["qedstream stream (process)", (qWall / 1000).toFixed(3), rate(qWall)], widths),
    );
    if (j.length) {
      const jMs = median(j.map((r) => r.jobMs));
      const label = `qedstream ${JOB_DEFAULTS.join(" ")} (job)`;
      console.log(row([label, (jMs / 1000).toFixed(3), rate(jMs)], widths));
    }
    console.log(
      row(["qemu-storage-daemon block-stream", (dMs / 1000).toFixed(3), rate(dMs)], widths),
    );
    console.log(row(["cp + sync", (cMs / 1000).toFixed(3), rate(cMs)], widths));
    const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
    // Each round's cases run back to back in one state of the machine: the median of the
    // per-round ratios is steadier than the ratio of the medians.
    const perQsd = q.map((r, i) => r.jobMs / d[i]!);
    const perCp = q.map((r, i) => r.jobMs / c[i]!);
    const list = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(", ");
    console.log(`\nper-round qedstream / qemu-storage-daemon: ${list(perQsd)}`);
    console.log(`per-round qedstream / cp: ${list(perCp)}`);
    const rQsd = median(perQsd);
    const rCp = median(perCp);
    console.log(
      `\nqedstream / qemu-storage-daemon = ${rQsd.toFixed(2)} (goal <= 0.8: ${
        verdict(rQsd <= 0.8)
      })`,
    );
    console.log(`qedstream / cp = ${rCp.toFixed(2)} (goal <= 1.3: ${verdict(rCp <= 1.3)})`);
    console.log(
      `qedstream peak RSS = ${peakMiB.toFixed(1)} MiB (goal <= 150: ${verdict(peakMiB <= 150)})`,
    );
  } finally {
    if (options.keep) console.log(`kept ${dir}`);
    else await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
