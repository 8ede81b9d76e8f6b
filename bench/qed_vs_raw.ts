/**
 * QED against raw, side by side in one run: sequential and random 64 KiB
 * writes and reads of 256 MiB through a QED image and through a raw file,
 * both on {@linkcode FileStorage} (the same I/O path), in a temporary folder.
 *
 * ```
 * deno task bench                      # 256 MiB, 7 rounds
 * deno task bench --size 64 --runs 3   # quicker
 * ```
 *
 * Writes go into a freshly created image (so every QED write allocates a
 * cluster, like a sparse raw file allocating blocks); reads read back what
 * was written. Raw and QED are interleaved: in every round each case runs
 * once on each, the order alternating between rounds, and the round's
 * QED/raw ratio is kept. The headline per case is the median of those
 * paired ratios (best-of figures follow, for information). Timings stop
 * before the final flush: the benchmark measures the I/O path, not the
 * disk's sync speed; QED without a backing file writes its deferred L2
 * sectors (one coalesced write per table) in that flush, so a "write +
 * close" line shows both sides including it. Rewrites over the allocated
 * image are informative too. The goal is QED ≥ 0.8 of raw in the four
 * write and read cases.
 *
 * @module
 */

import { FileStorage } from "../io/file_storage.ts";
import { QedImage } from "../qed/image.ts";
import { RawImage } from "../qed/raw_image.ts";
import { formatMachine, machineInfo } from "./_machine.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 64 * KiB;

interface Options {
  sizeMiB: number;
  runs: number;
  dir?: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { sizeMiB: 256, runs: 7 };
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

/** One measurement, in MiB/s, per operation. */
type Rates = Record<Operation, number>;

/** What a round measures for one kind of image. */
type Operation = "write" | "write + close" | "read" | "rewrite";

/** The operations reported, in order; `goal` marks those that must reach 0.8 of raw. */
const OPERATIONS: { op: Operation; goal: boolean }[] = [
  { op: "write", goal: true },
  { op: "read", goal: true },
  { op: "write + close", goal: false },
  { op: "rewrite", goal: false },
];

const GOAL = 0.8;

/** MiB/s of writing, reading back and rewriting `size` bytes in the given order. */
async function measure(
  kind: "qed" | "raw",
  path: string,
  size: number,
  order: number[],
): Promise<Rates> {
  const data = new Uint8Array(BLOCK);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
  const target = await openTarget(kind, path, size);
  let start = performance.now();
  for (const offset of order) await target.write(offset, data);
  const writeMs = performance.now() - start;
  await target.close();
  const writeCloseMs = performance.now() - start;
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
  return {
    "write": rate(writeMs),
    "write + close": rate(writeCloseMs),
    "read": rate(readMs),
    "rewrite": rate(rewriteMs),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
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
    `qedstream bench: QED vs raw, ${options.sizeMiB} MiB in 64 KiB requests, ${options.runs} interleaved rounds`,
  );
  console.log(`command: deno run -A bench/qed_vs_raw.ts ${Deno.args.join(" ")}`.trimEnd());
  console.log(formatMachine(await machineInfo()).trimEnd());
  console.log(`folder:  ${dir}`);
  /** Per case ("sequential write"): the raw and QED rates and the paired ratio of each round. */
  const samples = new Map<string, { raw: number[]; qed: number[]; ratio: number[] }>();
  try {
    for (let run = 0; run < options.runs; run++) {
      for (const random of [false, true]) {
        const order = offsets(count, random);
        const pattern = random ? "random" : "sequential";
        // Alternate which goes first so neither always meets a warmer cache.
        const kinds: ("qed" | "raw")[] = (run + (random ? 1 : 0)) % 2 === 0
          ? ["raw", "qed"]
          : ["qed", "raw"];
        const rates: Partial<Record<"qed" | "raw", Rates>> = {};
        for (const kind of kinds) {
          rates[kind] = await measure(kind, `${dir}/${kind}.img`, count * BLOCK, order);
        }
        for (const { op } of OPERATIONS) {
          const key = `${pattern} ${op}`;
          let entry = samples.get(key);
          if (!entry) samples.set(key, entry = { raw: [], qed: [], ratio: [] });
          const raw = rates.raw![op];
          const qed = rates.qed![op];
          entry.raw.push(raw);
          entry.qed.push(qed);
          entry.ratio.push(qed / raw);
        }
      }
      console.log(`round ${run + 1}/${options.runs} done`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log("");
  console.log(
    "case                       median MiB/s        QED/raw             best-of MiB/s     goal",
  );
  console.log(
    "                           raw       QED       median  (min-max)   raw     QED   ratio",
  );
  let met = 0;
  let goals = 0;
  for (const pattern of ["sequential", "random"]) {
    for (const { op, goal } of OPERATIONS) {
      const key = `${pattern} ${op}`;
      const s = samples.get(key)!;
      const ratio = median(s.ratio);
      const bestRaw = Math.max(...s.raw);
      const bestQed = Math.max(...s.qed);
      let verdict = "(info)";
      if (goal) {
        goals++;
        if (ratio >= GOAL) met++;
        verdict = ratio >= GOAL ? "meets 0.8" : "BELOW 0.8";
      }
      console.log(
        key.padEnd(24) + median(s.raw).toFixed(0).padStart(8) +
          median(s.qed).toFixed(0).padStart(10) + ratio.toFixed(2).padStart(11) +
          `  (${Math.min(...s.ratio).toFixed(2)}-${Math.max(...s.ratio).toFixed(2)})` +
          bestRaw.toFixed(0).padStart(8) + bestQed.toFixed(0).padStart(8) +
          (bestQed / bestRaw).toFixed(2).padStart(8) + "   " + verdict,
      );
    }
  }
  console.log("");
  console.log(
    "write = into a new image (QED allocates); write + close includes the final flush;",
  );
  console.log("rewrite = over the allocated image. QED/raw median = median of per-round ratios.");
  console.log(
    `goal QED/raw >= ${GOAL} (median) in the ${goals} write and read cases: ${met}/${goals} met${
      met === goals ? "" : " — NOT met"
    }`,
  );
}

if (import.meta.main) await main();
