/**
 * QED against raw, side by side in one run: sequential and random 64 KiB
 * writes and reads of 256 MiB through a QED image and through a raw file,
 * both on {@linkcode FileStorage} (the same I/O path), in a temporary folder.
 *
 * ```
 * deno task bench                      # 256 MiB, 5 rounds
 * deno task bench --size 64 --runs 1   # quicker
 * ```
 *
 * Writes go into a freshly created image (so every QED write allocates a
 * cluster and updates L2, like a sparse raw file allocating blocks); reads
 * read back what was written. A fifth and sixth line, for information,
 * rewrite the allocated image in place. Timings stop before the final flush: the
 * benchmark measures the I/O path, not the disk's sync speed. The goal is
 * QED ≥ 0.8 of raw in every case.
 *
 * @module
 */

import { FileStorage } from "../io/file_storage.ts";
import { QedImage } from "../qed/image.ts";
import { RawImage } from "../qed/raw_image.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64 * KiB;

interface Options {
  sizeMiB: number;
  runs: number;
  dir?: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { sizeMiB: 256, runs: 5 };
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
    else throw new Error(`unknown option ${arg} (use --size MiB, --runs N, --dir PATH)`);
  }
  if (!(options.sizeMiB > 0) || !(options.runs >= 1)) throw new Error("bad --size or --runs");
  return options;
}

/** The block offsets in sequential or a seeded random order. */
function offsets(count: number, random: boolean): number[] {
  const list = Array.from({ length: count }, (_, i) => i * BLOCK);
  if (!random) return list;
  let s = 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

interface Target {
  write(offset: number, data: Uint8Array): Promise<void>;
  read(offset: number, buf: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

async function openTarget(kind: "qed" | "raw", path: string, size: number): Promise<Target> {
  const created = await FileStorage.open(path, { create: true, truncate: true });
  if (kind === "qed") await QedImage.create(created, { size });
  else await RawImage.create(created, size);
  await created.close();
  const storage = await FileStorage.open(path);
  return kind === "qed" ? await QedImage.open(storage) : await RawImage.open(storage);
}

async function reopen(kind: "qed" | "raw", path: string): Promise<Target> {
  const storage = await FileStorage.open(path);
  return kind === "qed" ? await QedImage.open(storage) : await RawImage.open(storage);
}

/** MiB/s of writing then reading `size` bytes in the given order. */
async function measure(
  kind: "qed" | "raw",
  path: string,
  size: number,
  order: number[],
): Promise<{ write: number; read: number; rewrite: number }> {
  const data = new Uint8Array(BLOCK);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
  const target = await openTarget(kind, path, size);
  let start = performance.now();
  for (const offset of order) await target.write(offset, data);
  const writeMs = performance.now() - start;
  await target.close();
  const reader = await reopen(kind, path);
  const buf = new Uint8Array(BLOCK);
  start = performance.now();
  for (const offset of order) await reader.read(offset, buf);
  const readMs = performance.now() - start;
  // Overwriting allocated clusters: no metadata to update, the same single write as raw.
  start = performance.now();
  for (const offset of order) await reader.write(offset, data);
  const rewriteMs = performance.now() - start;
  await reader.close();
  await Deno.remove(path);
  const rate = (ms: number) => size / MiB / (ms / 1000);
  return { write: rate(writeMs), read: rate(readMs), rewrite: rate(rewriteMs) };
}

async function machine(): Promise<string> {
  let cpu = "unknown CPU";
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /model name\s*:\s*(.*)/.exec(info)?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux
  }
  return `${navigator.hardwareConcurrency} cores (${cpu}), ${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}, deno ${Deno.version.deno} (V8 ${Deno.version.v8})`;
}

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const size = options.sizeMiB * MiB;
  const count = Math.floor(size / BLOCK);
  const dir = await Deno.makeTempDir({
    prefix: "qedstream-bench-",
    ...(options.dir ? { dir: options.dir } : {}),
  });
  console.log(
    `qedstream bench: QED vs raw, ${options.sizeMiB} MiB in 64 KiB requests, ${options.runs} rounds`,
  );
  console.log(`command: deno run -A bench/qed_vs_raw.ts ${Deno.args.join(" ")}`.trimEnd());
  console.log(`machine: ${await machine()}`);
  console.log(`folder:  ${dir}`);
  const samples = new Map<string, number[]>();
  const keep = (key: string, value: number) => {
    const list = samples.get(key);
    if (list) list.push(value);
    else samples.set(key, [value]);
  };
  try {
    for (let run = 0; run < options.runs; run++) {
      for (const random of [false, true]) {
        const order = offsets(count, random);
        const pattern = random ? "random" : "sequential";
        // Alternate which goes first so neither always meets a warmer cache.
        const kinds: ("qed" | "raw")[] = run % 2 === 0 ? ["raw", "qed"] : ["qed", "raw"];
        for (const kind of kinds) {
          const r = await measure(kind, `${dir}/${kind}.img`, count * BLOCK, order);
          keep(`${pattern} write ${kind}`, r.write);
          keep(`${pattern} read ${kind}`, r.read);
          keep(`${pattern} rewrite ${kind}`, r.rewrite);
        }
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const best = (key: string) => Math.max(...samples.get(key)!);
  const median = (key: string) => {
    const sorted = [...samples.get(key)!].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)]!;
  };
  console.log("");
  console.log("case               raw MiB/s   QED MiB/s   QED/raw   (medians: raw, QED, ratio)");
  let worst = Infinity;
  for (const pattern of ["sequential", "random"]) {
    for (const op of ["write", "read", "rewrite"]) {
      const key = `${pattern} ${op}`;
      const raw = best(`${key} raw`);
      const qed = best(`${key} qed`);
      if (op !== "rewrite") worst = Math.min(worst, qed / raw);
      const mr = median(`${key} raw`);
      const mq = median(`${key} qed`);
      console.log(
        key.padEnd(17) + raw.toFixed(0).padStart(11) + qed.toFixed(0).padStart(12) +
          (qed / raw).toFixed(2).padStart(10) +
          `   (${mr.toFixed(0)}, ${mq.toFixed(0)}, ${(mq / mr).toFixed(2)})`,
      );
    }
  }
  console.log("");
  console.log(
    "write = into a new image (QED allocates: data + L2 sector), rewrite = over it (informative)",
  );
  console.log(
    `best-of-${options.runs} figures; lowest ratio of the 4 cases ${
      worst.toFixed(2)
    } (goal >= 0.80): ${worst >= 0.8 ? "met" : "NOT met"}`,
  );
}

if (import.meta.main) await main();
