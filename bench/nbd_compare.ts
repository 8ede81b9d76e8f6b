/**
 * Streaming from a remote NBD repository, side by side in one run: a QED
 * overlay whose backing file is `nbd+unix:///tpl?socket=…`, served by
 * nbdkit, streamed into independence by `qedstream stream` and by
 * qemu-storage-daemon 7.2's `block-stream` from the same server.
 *
 * ```
 * deno task bench:compare                  # runs bench/stream_compare.ts, then this
 * deno run -A bench/nbd_compare.ts         # 256 MiB, 20 ms delay, 50 MiB/s, sparse 8 GiB
 * deno run -A bench/nbd_compare.ts --size 64 --no-sparse --dir /var/tmp
 * ```
 *
 * Cases (issue 6):
 * 1. latency: `nbdkit --filter=delay file TEMPLATE rdelay=20ms`, a random
 *    256 MiB template. Goal: qedstream at least 8 × faster than qemu.
 * 2. bandwidth: the same plus `--filter=rate rate=400M burstiness=0.1`. The
 *    rate filter counts bits per second and nbdkit's `M` is 2^20, so
 *    `400M` is exactly 50 MiB/s (`rate=50M` would be 6.25 MiB/s); a small
 *    burstiness keeps the filter from granting a 2 s burst first. Goal:
 *    qedstream at ≥ 85 % of 50 MiB/s. `nbdcopy` from the same server to a
 *    local file shows what the link gives a client with many requests in flight.
 * 3. sparse: `nbdkit sparse-random` templates (same 20 ms delay), two data
 *    amounts at 8 GiB virtual size and the same data at 4 GiB: the time
 *    should follow the data, not the virtual size.
 *
 * qedstream's time is the job's own, from the command's final JSON line
 * (start to the image flushed and closed, without process start-up);
 * qemu-storage-daemon's runs from `block-stream` to `BLOCK_JOB_COMPLETED`
 * over the project's QmpClient. Every result is checked with `qemu-img
 * compare` against the export and `qemu-img info` (no backing file left).
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { NbdClient } from "../nbd/client.ts";
import { formatMachine, machineInfo } from "./_machine.ts";
import { runOk } from "./_process.ts";
import { qsdBlockStream } from "./_qsd.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const CLI = fileURLToPath(new URL("../cli.ts", import.meta.url));
const EXPORT = "tpl";
/** Link rate of case 2, in bytes per second, and the nbdkit argument that sets it. */
const LINK_RATE = 50 * MiB;
const RATE_ARG = "rate=400M";

interface Options {
  sizeMiB: number;
  delayMs: number;
  dir?: string;
  keep: boolean;
  qsd: boolean;
  rate: boolean;
  sparse: boolean;
  sparseDataMiB: number;
  streamArgs: string[];
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    sizeMiB: 256,
    delayMs: 20,
    keep: false,
    qsd: true,
    rate: true,
    sparse: true,
    sparseDataMiB: 128,
    streamArgs: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === "--size") o.sizeMiB = Number(value());
    else if (arg === "--delay") o.delayMs = Number(value());
    else if (arg === "--dir") o.dir = value();
    else if (arg === "--keep") o.keep = true;
    else if (arg === "--no-qsd") o.qsd = false;
    else if (arg === "--no-rate") o.rate = false;
    else if (arg === "--no-sparse") o.sparse = false;
    else if (arg === "--sparse-data") o.sparseDataMiB = Number(value());
    else if (arg === "--stream-arg") o.streamArgs.push(value());
    else {
      throw new Error(
        `unknown option ${arg} (use --size MiB, --delay MS, --dir PATH, --keep, --no-qsd, ` +
          `--no-rate, --no-sparse, --sparse-data MiB, --stream-arg ARG)`,
      );
    }
  }
  if (!(o.sizeMiB > 0) || !(o.delayMs >= 0) || !(o.sparseDataMiB > 0)) {
    throw new Error("bad --size, --delay or --sparse-data");
  }
  return o;
}

/** Whether `program` is on the PATH. */
async function has(program: string): Promise<boolean> {
  const out = await new Deno.Command("sh", { args: ["-c", `command -v ${program}`] }).output();
  return out.code === 0;
}

/** A running nbdkit on a Unix socket. */
interface Repository extends AsyncDisposable {
  uri: string;
  socket: string;
}

async function startNbdkit(dir: string, name: string, args: string[]): Promise<Repository> {
  const socket = join(dir, `${name}.sock`);
  await Deno.remove(socket).catch(() => {});
  const child = new Deno.Command("nbdkit", {
    args: ["-f", "-U", socket, "-e", EXPORT, ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  child.status.then(() => exited = true);
  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    await child.status;
    await child.stderr.cancel().catch(() => {});
    await Deno.remove(socket).catch(() => {});
  };
  for (let i = 0; i < 1000; i++) {
    if (exited) break;
    try {
      if ((await Deno.stat(socket)).isSocket) {
        return {
          socket,
          uri: `nbd+unix:///${EXPORT}?socket=${socket}`,
          [Symbol.asyncDispose]: stop,
        };
      }
    } catch {
      // Not there yet.
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  await stop();
  throw new Error(`nbdkit ${args.join(" ")} did not start`);
}

/** Bytes the export reports as data (`base:allocation`). */
async function dataBytes(repo: Repository): Promise<number> {
  const client = await NbdClient.connect({
    address: { type: "unix", path: repo.socket },
    exportName: EXPORT,
    readOnly: true,
  });
  try {
    let data = 0;
    for (let at = 0; at < client.size;) {
      const st = await client.blockStatus(at, client.size - at);
      if (st.kind === "data") data += st.length;
      at += st.length;
    }
    return data;
  } finally {
    await client.close();
  }
}

async function overlay(dir: string, name: string, repo: Repository): Promise<string> {
  const path = join(dir, name);
  await Deno.remove(path).catch(() => {});
  await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", repo.uri, "-F", "raw", path]);
  return path;
}

/** What a result must equal: an image file or an export, with its format. */
interface Reference {
  path: string;
  format: "raw" | "qed";
}

async function verify(path: string, reference: Reference): Promise<void> {
  const info = JSON.parse(await runOk("qemu-img", ["info", "--output", "json", path]));
  if (info["backing-filename"] !== undefined) {
    throw new Error(`${path} still has a backing file: ${info["backing-filename"]}`);
  }
  await runOk("qemu-img", [
    "compare",
    "-q",
    "-f",
    "qed",
    "-F",
    reference.format,
    path,
    reference.path,
  ]);
}

/** `qedstream stream` on a fresh overlay of `repo`; returns the job's seconds. */
async function qedstream(
  dir: string,
  repo: Repository,
  reference: Reference,
  streamArgs: string[],
): Promise<number> {
  const path = await overlay(dir, "qedstream.qed", repo);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "stream", ...streamArgs, "--output", "json", path],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) {
    throw new Error(`qedstream stream exited ${out.code}: ${dec.decode(out.stderr)}`);
  }
  const last = JSON.parse(dec.decode(out.stdout).trim().split("\n").at(-1)!);
  if (last.event !== "completed") throw new Error(`qedstream stream ended with ${last.event}`);
  await verify(path, reference);
  await Deno.remove(path);
  return last.elapsed;
}

/** qemu-storage-daemon's block-stream on a fresh overlay of `repo`; returns seconds. */
async function qsd(dir: string, repo: Repository, reference: Reference): Promise<number> {
  const path = await overlay(dir, "qsd.qed", repo);
  const ms = await qsdBlockStream(path, dir);
  await verify(path, reference);
  await Deno.remove(path);
  return ms / 1000;
}

/** `nbdcopy` of the whole export to a local file; returns seconds. */
async function nbdcopy(dir: string, repo: Repository): Promise<number> {
  const copy = join(dir, "nbdcopy.raw");
  const start = performance.now();
  await runOk("nbdcopy", [repo.uri, copy]);
  const s = (performance.now() - start) / 1000;
  await Deno.remove(copy);
  return s;
}

async function writeTemplate(path: string, sizeMiB: number): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const buf = new Uint8Array(MiB);
    for (let i = 0; i < sizeMiB; i++) {
      for (let o = 0; o < MiB; o += 65536) crypto.getRandomValues(buf.subarray(o, o + 65536));
      let done = 0;
      while (done < buf.length) done += await file.write(buf.subarray(done));
    }
  } finally {
    file.close();
  }
}

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
}

const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
const mibps = (bytes: number, s: number) => (bytes / MiB / s).toFixed(1);

async function main(): Promise<void> {
  const o = parseOptions(Deno.args);
  const missing = [];
  for (const p of ["nbdkit", "qemu-img", ...(o.qsd ? ["qemu-storage-daemon"] : [])]) {
    if (!(await has(p))) missing.push(p);
  }
  if (missing.length) {
    console.log(`nbd_compare: skipped, not installed: ${missing.join(", ")}`);
    return;
  }
  const dir = await Deno.makeTempDir({
    prefix: "qedstream-nbd-bench-",
    ...(o.dir ? { dir: o.dir } : {}),
  });
  const size = o.sizeMiB * MiB;
  const delay = `rdelay=${o.delayMs}ms`;
  console.log(`nbd_compare: streaming from nbdkit over a Unix socket, temporary folder ${dir}`);
  console.log(`command: deno run -A bench/nbd_compare.ts ${Deno.args.join(" ")}`.trimEnd());
  console.log(
    `qedstream: deno run -A cli.ts stream ${
      [...o.streamArgs, "--output", "json"].join(" ")
    } OVERLAY   (OVERLAY: qemu-img create -f qed -b nbd+unix:///tpl?socket=SOCK -F raw)`,
  );
  console.log(formatMachine(await machineInfo()));
  const widths = [66, 9, 9];
  const lines: string[] = [row(["case", "time (s)", "MiB/s"], widths)];
  const goals: string[] = [];
  try {
    const template = join(dir, "template.raw");
    await writeTemplate(template, o.sizeMiB);
    const file: Reference = { path: template, format: "raw" };

    // 1. Latency.
    {
      await using repo = await startNbdkit(dir, "delay", [
        "--filter=delay",
        "file",
        template,
        delay,
      ]);
      const label = `${o.sizeMiB} MiB, nbdkit --filter=delay ${delay}`;
      const q = await qedstream(dir, repo, file, o.streamArgs);
      console.log(`${label}: qedstream ${q.toFixed(3)} s`);
      lines.push(row([`${label}: qedstream`, q.toFixed(3), mibps(size, q)], widths));
      if (o.qsd) {
        const d = await qsd(dir, repo, file);
        console.log(`${label}: qemu-storage-daemon ${d.toFixed(3)} s`);
        lines.push(row([`${label}: qemu-storage-daemon`, d.toFixed(3), mibps(size, d)], widths));
        goals.push(
          `latency: qemu-storage-daemon / qedstream = ${(d / q).toFixed(1)} ` +
            `(goal >= 8: ${verdict(d / q >= 8)})`,
        );
      }
    }

    // 2. Bandwidth and latency.
    if (o.rate) {
      await using repo = await startNbdkit(dir, "rate", [
        "--filter=rate",
        "--filter=delay",
        "file",
        template,
        RATE_ARG,
        "burstiness=0.1",
        delay,
      ]);
      const label = `${o.sizeMiB} MiB, + --filter=rate ${RATE_ARG} (50 MiB/s)`;
      const q = await qedstream(dir, repo, file, o.streamArgs);
      console.log(`${label}: qedstream ${q.toFixed(3)} s`);
      lines.push(row([`${label}: qedstream`, q.toFixed(3), mibps(size, q)], widths));
      if (await has("nbdcopy")) {
        const c = await nbdcopy(dir, repo);
        lines.push(row([`${label}: nbdcopy`, c.toFixed(3), mibps(size, c)], widths));
      }
      if (o.qsd) {
        const d = await qsd(dir, repo, file);
        console.log(`${label}: qemu-storage-daemon ${d.toFixed(3)} s`);
        lines.push(row([`${label}: qemu-storage-daemon`, d.toFixed(3), mibps(size, d)], widths));
      }
      const share = size / q / LINK_RATE;
      goals.push(
        `bandwidth: qedstream at ${(share * 100).toFixed(0)} % of 50 MiB/s ` +
          `(goal >= 85 %: ${verdict(share >= 0.85)})`,
      );
    }

    // 3. Sparse templates.
    if (o.sparse) {
      const data = o.sparseDataMiB * MiB;
      const cases = [
        { virtual: 8 * GiB, data },
        { virtual: 8 * GiB, data: 2 * data },
        { virtual: 4 * GiB, data },
      ];
      const runs: { s: number; data: number }[] = [];
      for (const c of cases) {
        const sparse = [
          "sparse-random",
          `size=${c.virtual}`,
          `percent=${(100 * c.data) / c.virtual}`,
          "runlength=1048576",
          "seed=42",
        ];
        // The same seed without the delay: the reference the result is compared with.
        await using plain = await startNbdkit(dir, "sparse-plain", sparse);
        await using repo = await startNbdkit(dir, "sparse", ["--filter=delay", ...sparse, delay]);
        const actual = await dataBytes(repo);
        const q = await qedstream(dir, repo, { path: plain.uri, format: "raw" }, o.streamArgs);
        runs.push({ s: q, data: actual });
        const label = `sparse-random ${c.virtual / GiB} GiB, ${(actual / MiB).toFixed(0)} MiB data`;
        console.log(`${label}: qedstream ${q.toFixed(3)} s`);
        lines.push(row([`${label}: qedstream`, q.toFixed(3), mibps(actual, q)], widths));
      }
      // sparse-random's data amounts are approximate: compare seconds per byte of data.
      const [a, b, c] = runs.map((r) => r.s / r.data) as [number, number, number];
      goals.push(
        `sparse, 8 GiB: ${(runs[1]!.data / runs[0]!.data).toFixed(2)}x the data took ` +
          `${(runs[1]!.s / runs[0]!.s).toFixed(2)}x the time; time per data byte ratio ` +
          `${(b / a).toFixed(2)} (goal 0.8-1.25: ${verdict(b / a >= 0.8 && b / a <= 1.25)})`,
      );
      goals.push(
        `sparse, 8 GiB vs 4 GiB virtual (2x): time per data byte ratio ${(a / c).toFixed(2)} ` +
          `(goal <= 1.25: ${verdict(a / c <= 1.25)})`,
      );
    }
    console.log(`\n${lines.join("\n")}\n\n${goals.join("\n")}`);
  } finally {
    if (o.keep) console.log(`kept ${dir}`);
    else await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await main();
