/**
 * QED interoperability with real qemu 7.2 tools, both ways:
 *
 * - images qedstream creates and writes (through the API and the CLI) pass
 *   `qemu-img check` with no errors or leaks and `qemu-img compare` equal to
 *   a raw file holding the expected contents;
 * - headers from `qedstream create` and `qedstream rebase -u` are
 *   byte-identical to `qemu-img create` / `qemu-img rebase -u`;
 * - images that `qemu-img create` + `qemu-io` write read back in qedstream
 *   byte-identical to `qemu-img convert -O raw`, pass qedstream's check, and
 *   give the same `info` and `map` JSON.
 *
 * qemu 7.2 fills the untouched part of a partial write into a *zero*
 * cluster from the backing file, where the QED specification (and
 * qedstream) fills zeros (reference §14.2). The qemu-written scenarios
 * therefore never write partially into a zero cluster over a non-zero
 * backing file; the qedstream-written ones do, and the expected raw data
 * follows the specification (qemu only reads those images).
 *
 * Sizes stay below the point where qemu's cluster-count rounding reports
 * spurious leaks (reference §14.3): 4 KiB-cluster images stay under 16 MiB
 * of file.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { FileStorage } from "../../io/file_storage.ts";
import { QedImage } from "../../qed/image.ts";
import { openImageFile } from "../../qed/open_file.ts";
import { programsPresent, run, runOk, tempDir } from "../_tools.ts";
import { patchFile, qedstream, u64 } from "../cli/_cli.ts";

const ignore = !programsPresent("qemu-img", "qemu-io");
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** One write to replay on an image and on the expected raw file. */
type Op =
  | { write: number; at: number; length: number }
  | { zero: true; at: number; length: number };

function w(pattern: number, at: number, length: number): Op {
  return { write: pattern, at, length };
}

function z(at: number, length: number): Op {
  return { zero: true, at, length };
}

/** qemu-io's spelling of an op. */
function qemuIoCommand(op: Op): string {
  return "zero" in op
    ? `write -z ${op.at} ${op.length}`
    : `write -P ${op.write} ${op.at} ${op.length}`;
}

/** Deterministic bytes for backing files. */
function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let s = seed | 1;
  for (let i = 0; i < length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

/** Writes a raw file of `size` bytes (sparse) holding `prefix` at 0 and then `ops`. */
async function expectedRaw(
  path: string,
  size: number,
  prefix: Uint8Array | null,
  ops: readonly Op[],
): Promise<void> {
  const file = await FileStorage.open(path, { create: true, truncate: true });
  try {
    await file.truncate(size);
    if (prefix) await file.write(0, prefix.subarray(0, Math.min(prefix.length, size)));
    for (const op of ops) {
      await file.write(op.at, new Uint8Array(op.length).fill("zero" in op ? 0 : op.write));
    }
  } finally {
    await file.close();
  }
}

/** Applies `ops` to a QED image through the API. */
async function applyOps(image: QedImage, ops: readonly Op[]): Promise<void> {
  for (const op of ops) {
    if ("zero" in op) await image.writeZeroes(op.at, op.length);
    else await image.write(op.at, new Uint8Array(op.length).fill(op.write));
  }
}

/** `qemu-img check` exits 0 (no corruption, no leak, no error) and says so in JSON. */
async function qemuCheckClean(path: string): Promise<void> {
  const r = await run("qemu-img", ["check", "--output=json", path]);
  assert.equal(r.code, 0, `qemu-img check ${path}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  const report = JSON.parse(r.stdout);
  assert.equal(report["check-errors"], 0);
  assert.equal(report.corruptions, undefined);
  assert.equal(report.leaks, undefined);
}

/** `qemu-img compare` finds the image's contents equal to the raw file. */
async function qemuCompareEqual(image: string, raw: string): Promise<void> {
  const r = await run("qemu-img", ["compare", "-f", "qed", "-F", "raw", image, raw]);
  assert.equal(r.code, 0, `qemu-img compare ${image} ${raw}: ${r.stdout}${r.stderr}`);
  assert.equal(r.stdout, "Images are identical.\n");
}

/**
 * The ranges `qemu-img map` reports as holding data (for a QED image also
 * its zero clusters and what its backing chain holds).
 */
async function qemuDataRanges(path: string, format: string): Promise<[number, number][]> {
  const out = await runOk("qemu-img", ["map", "-f", format, "--output=json", path]);
  return (JSON.parse(out) as { start: number; length: number; data: boolean; present: boolean }[])
    .filter((e) => e.data || (format === "qed" && e.present))
    .map((e) => [e.start, e.start + e.length]);
}

/**
 * qedstream reads `image` (with its chain) byte-identical to `flat`, a raw
 * file qemu-img converted it to: every range either side maps as data is
 * compared; outside them both read zeros (checked on a sample).
 */
async function qedstreamReadsLike(image: string, flat: string): Promise<void> {
  const ranges = [
    ...(await qemuDataRanges(flat, "raw")),
    ...(await qemuDataRanges(image, "qed")),
  ].sort((a, b) => a[0] - b[0]);
  const opened = await openImageFile(image, { readOnly: true });
  const raw = await FileStorage.open(flat, { readOnly: true });
  try {
    const size = opened.image.size;
    assert.equal(size, await raw.size());
    const compare = async (start: number, end: number) => {
      for (let pos = start; pos < end; pos += 4 * MiB) {
        const len = Math.min(4 * MiB, end - pos);
        const mine = new Uint8Array(len);
        const theirs = new Uint8Array(len);
        await opened.image.read(pos, mine);
        await raw.read(pos, theirs);
        if (Buffer.compare(mine, theirs) !== 0) {
          const i = mine.findIndex((b, j) => b !== theirs[j]);
          assert.fail(
            `${image}: byte ${pos + i} reads ${mine[i]} in qedstream, ${theirs[i]} in qemu`,
          );
        }
      }
    };
    for (const [start, end] of ranges) await compare(start, Math.min(end, size));
    // Spot-check the gaps too: start, middle and end of the image.
    for (const at of [0, Math.floor(size / 2 / 4096) * 4096, Math.max(0, size - 4096)]) {
      await compare(at, Math.min(size, at + 4096));
    }
  } finally {
    await raw.close();
    await opened.close();
  }
}

/** qedstream's check of one QED file finds nothing. */
async function qedstreamCheckClean(path: string): Promise<void> {
  const r = await qedstream(["check", "--output", "json", path], ".");
  assert.equal(r.code, 0, `qedstream check ${path}: ${r.stdout}${r.stderr}`);
  const report = JSON.parse(r.stdout);
  assert.equal(report.corruptions, undefined);
  assert.equal(report.leaks, undefined);
}

/** Creates a raw file holding `data`. */
async function writeRaw(path: string, data: Uint8Array): Promise<void> {
  await Deno.writeFile(path, data);
}

// ---------------------------------------------------------------------------
// qedstream writes, qemu reads

interface ApiScenario {
  name: string;
  size: number;
  clusterSize?: number;
  tableSize?: number;
  backing?: { bytes: number; seed: number };
  ops: Op[];
}

const API_SCENARIOS: ApiScenario[] = [
  {
    name: "4 KiB clusters, 3 L2 tables, unaligned writes across clusters and tables",
    size: 9 * MiB,
    clusterSize: 4096,
    tableSize: 2, // 1024 entries: each L2 table maps 4 MiB
    ops: [
      w(0x11, 1000, 10000),
      w(0x22, 4 * MiB - 3000, 6000),
      z(8192, 16384),
      z(5000, 100),
      w(0x33, 8 * MiB + 100, 500000),
      w(0x44, 20000, 100), // partial write into a zero cluster
      w(0x55, 6 * MiB, 4096),
    ],
  },
  {
    name: "default geometry, 5 GiB, writes across the 2 GiB and 4 GiB table boundaries",
    size: 5 * GiB,
    ops: [
      w(0x61, 4 * GiB - 1000, 3000),
      w(0x62, 2 * GiB - 65536 - 10, 131092),
      z(3 * GiB, MiB),
      w(0x63, 5 * GiB - 512, 512),
      z(4 * GiB - 65536, 65536),
    ],
  },
  {
    name: "raw backing file shorter than the image, 16 KiB clusters",
    size: 4 * MiB,
    clusterSize: 16384,
    backing: { bytes: 3 * MiB + 123, seed: 7 },
    ops: [
      w(0x71, 5000, 30000),
      z(65536, 65536),
      w(0x72, 65536 + 100, 10), // into a zero cluster: zeros around it (spec)
      z(200000, 50000),
      w(0x73, 3 * MiB + 100, 1000), // spans the end of the backing file
      w(0x74, 4 * MiB - 10, 10),
    ],
  },
  {
    name: "table size 16, 64 KiB clusters, many small writes in one table",
    size: 64 * MiB,
    tableSize: 16,
    ops: Array.from({ length: 40 }, (_, i) => w(i + 1, i * 1_600_000 + i * 7, 3000 + i * 100)),
  },
];

for (const s of API_SCENARIOS) {
  Deno.test({
    name: `qemu-img accepts what the qedstream API writes: ${s.name}`,
    ignore,
    async fn() {
      await using dir = await tempDir();
      const image = `${dir.path}/img.qed`;
      const expected = `${dir.path}/expected.raw`;
      let prefix: Uint8Array | null = null;
      if (s.backing) {
        prefix = noise(s.backing.bytes, s.backing.seed);
        await writeRaw(`${dir.path}/base.raw`, prefix);
      }
      const storage = await FileStorage.open(image, { create: true, truncate: true });
      await QedImage.create(storage, {
        size: s.size,
        ...(s.clusterSize ? { clusterSize: s.clusterSize } : {}),
        ...(s.tableSize ? { tableSize: s.tableSize } : {}),
        ...(s.backing ? { backingFile: "base.raw", backingFormat: "raw" } : {}),
      });
      await storage.close();
      const opened = await openImageFile(image);
      try {
        await applyOps(opened.image as QedImage, s.ops);
      } finally {
        await opened.close();
      }
      await expectedRaw(expected, s.size, prefix, s.ops);
      await qemuCheckClean(image);
      await qemuCompareEqual(image, expected);
    },
  });
}

Deno.test({
  name: "qemu-img accepts a qed → qed → raw chain the qedstream API writes",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const base = noise(2 * MiB, 3);
    await writeRaw(`${dir.path}/base.raw`, base);
    const mid = `${dir.path}/mid.qed`;
    const top = `${dir.path}/top.qed`;
    const midOps = [w(0x81, 70000, 200000), z(512 * KiB, 256 * KiB)];
    const topOps = [w(0x82, 100, 1000), w(0x83, 600 * KiB + 1, 70000), z(MiB, 64 * KiB)];
    for (
      const [path, opts] of [
        [mid, { size: 2 * MiB, backingFile: "base.raw", backingFormat: "raw", tableSize: 2 }],
        [top, { size: 3 * MiB, backingFile: "mid.qed", backingFormat: "qed" }],
      ] as const
    ) {
      const storage = await FileStorage.open(path, { create: true, truncate: true });
      await QedImage.create(storage, opts);
      await storage.close();
    }
    for (const [path, ops] of [[mid, midOps], [top, topOps]] as const) {
      const opened = await openImageFile(path);
      try {
        await applyOps(opened.image as QedImage, ops);
      } finally {
        await opened.close();
      }
    }
    await expectedRaw(`${dir.path}/expected.raw`, 3 * MiB, base, [...midOps, ...topOps]);
    await qemuCheckClean(mid);
    await qemuCheckClean(top);
    await qemuCompareEqual(top, `${dir.path}/expected.raw`);
    const info = JSON.parse(await runOk("qemu-img", ["info", "--output=json", top]));
    assert.equal(info["backing-filename"], "mid.qed");
    assert.equal(info["backing-filename-format"], undefined);
    // The whole chain as qemu-img describes it, text and JSON.
    for (const output of [[], ["--output=json"]]) {
      const args = ["info", "--backing-chain", ...output, "top.qed"];
      const ours = await qedstream(args, dir.path);
      assert.equal(ours.stdout, await runOk("qemu-img", args, dir.path), args.join(" "));
    }
  },
});

Deno.test({
  name: "qemu-img accepts what the qedstream CLI creates and writes, with a raw backing file",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const base = noise(MiB, 11);
    await writeRaw(`${dir.path}/base.raw`, base);
    const ops = [
      w(0xa1, 1000, 100000),
      z(256 * KiB, 128 * KiB),
      w(0xa2, 300 * KiB, 1),
      z(700000, 5000),
    ];
    const created = await qedstream(
      [
        "create",
        "-f",
        "qed",
        "-b",
        "base.raw",
        "-F",
        "raw",
        "-o",
        "cluster_size=8k,table_size=2",
        "ov.qed",
        "2M",
      ],
      dir.path,
    );
    assert.equal(created.code, 0, created.stderr);
    const io = await qedstream(
      ["io", "ov.qed", ...ops.flatMap((op) => ["-c", qemuIoCommand(op)])],
      dir.path,
    );
    assert.equal(io.code, 0, io.stderr);
    await expectedRaw(`${dir.path}/expected.raw`, 2 * MiB, base, ops);
    await qemuCheckClean(`${dir.path}/ov.qed`);
    await qemuCompareEqual(`${dir.path}/ov.qed`, `${dir.path}/expected.raw`);
    // Our compare agrees with qemu's, and our info/map JSON with qemu-img's.
    const cmp = await qedstream(["compare", "ov.qed", "expected.raw"], dir.path);
    assert.equal(cmp.stdout, "Images are identical.\n");
    const ours = await qedstream(["info", "--output", "json", "ov.qed"], dir.path);
    assert.equal(
      ours.stdout,
      await runOk("qemu-img", ["info", "--output=json", "ov.qed"], dir.path),
    );
  },
});

// ---------------------------------------------------------------------------
// Headers byte-identical to qemu-img's

Deno.test({
  name: "qedstream create writes the same bytes as qemu-img create",
  ignore,
  async fn() {
    await using dir = await tempDir();
    await writeRaw(`${dir.path}/base.raw`, noise(100000, 5));
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "base.qed", "3M"], dir.path);
    const cases: [string[], string[]][] = [
      [[], ["10M"]],
      [["-o", "cluster_size=4096,table_size=2"], ["1M"]],
      [["-o", "cluster_size=1M,table_size=16"], ["100G"]],
      [["-o", "table_size=8"], ["5G"]],
      [[], ["100000"]],
      [[], ["0"]],
      [["-b", "base.raw", "-F", "raw"], []],
      [["-b", "base.qed", "-F", "qed", "-o", "cluster_size=16k"], []],
      [["-b", "base.raw", "-F", "raw"], ["64T"]],
    ];
    for (const [i, [options, size]] of cases.entries()) {
      const mine = `mine${i}.qed`;
      const theirs = `theirs${i}.qed`;
      const args = [...options, ...size];
      const qemu = await runOk(
        "qemu-img",
        ["create", "-f", "qed", ...options, theirs, ...size],
        dir.path,
      );
      const ours = await qedstream(["create", "-f", "qed", ...options, mine, ...size], dir.path);
      assert.equal(ours.code, 0, `${args.join(" ")}: ${ours.stderr}`);
      assert.equal(ours.stdout, qemu.replace(theirs, mine), args.join(" "));
      const a = await Deno.readFile(`${dir.path}/${mine}`);
      const b = await Deno.readFile(`${dir.path}/${theirs}`);
      assert.equal(a.length, b.length, args.join(" "));
      assert.ok(Buffer.compare(a, b) === 0, `${args.join(" ")}: bytes differ`);
    }
  },
});

Deno.test({
  name: "qedstream rebase -u rewrites the header byte for byte like qemu-img rebase -u",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const p = (name: string) => `${dir.path}/${name}`;
    await runOk("qemu-img", ["create", "-q", "-f", "raw", "base.raw", "1M"], dir.path);
    await runOk("qemu-img", [
      "create",
      "-q",
      "-f",
      "qed",
      "-b",
      "base.raw",
      "-F",
      "raw",
      "orig.qed",
    ], dir.path);
    await runOk("qemu-io", ["-c", "write -P 9 0 70000", "orig.qed"], dir.path);
    const steps: string[][] = [
      ["-b", "other-name.raw", "-F", "raw"],
      ["-b", "x.qed", "-F", "qed"],
      ["-b", "base.qcow2", "-F", "qcow2"],
      ["-b", "", "-F", "raw"],
      ["-b", "base.raw", "-F", "raw"],
      ["-b", ""],
    ];
    await Deno.copyFile(p("orig.qed"), p("mine.qed"));
    await Deno.copyFile(p("orig.qed"), p("theirs.qed"));
    for (const step of steps) {
      await runOk("qemu-img", ["rebase", "-u", ...step, "theirs.qed"], dir.path);
      const r = await qedstream(["rebase", "-u", ...step, "mine.qed"], dir.path);
      assert.equal(r.code, 0, `${step.join(" ")}: ${r.stderr}`);
      const a = await Deno.readFile(p("mine.qed"));
      const b = await Deno.readFile(p("theirs.qed"));
      assert.equal(a.length, b.length);
      assert.ok(Buffer.compare(a, b) === 0, `after rebase -u ${step.join(" ")}: bytes differ`);
    }
    // Refused without -F, header untouched, as in qemu 7.2.
    const before = await Deno.readFile(p("mine.qed"));
    const refused = await qedstream(["rebase", "-u", "-b", "y.raw", "mine.qed"], dir.path);
    const qemuRefused = await run(
      "qemu-img",
      ["rebase", "-u", "-b", "y.raw", "theirs.qed"],
      dir.path,
    );
    assert.equal(refused.code, 1);
    assert.equal(qemuRefused.code, 1);
    assert.equal(refused.stderr, qemuRefused.stderr.replace(/^qemu-img: /, "qedstream: "));
    assert.deepEqual(await Deno.readFile(p("mine.qed")), before);
  },
});

// ---------------------------------------------------------------------------
// qemu writes, qedstream reads

interface QemuScenario {
  name: string;
  /** qemu-img create arguments after `-f qed` and before the file name, and the size. */
  create: string[];
  size?: string;
  backing?: { name: string; bytes: number; seed: number };
  ops: Op[];
  /** Compare `map` JSON with qemu-img's (not with a raw backing file: we cannot see its holes). */
  compareMap: boolean;
}

const QEMU_SCENARIOS: QemuScenario[] = [
  {
    name: "4 KiB clusters, several L2 tables, unaligned and zero writes",
    create: ["-o", "cluster_size=4096,table_size=2"],
    size: "9M",
    ops: [
      w(0x11, 1000, 10000),
      w(0x22, 4 * MiB - 3000, 6000),
      z(8192, 16384),
      z(5000, 100),
      w(0x33, 8 * MiB + 100, 500000),
      w(0x44, 20000, 100),
      w(0x55, 6 * MiB, 4096),
    ],
    compareMap: true,
  },
  {
    name: "5 GiB image, writes across the 2 GiB and 4 GiB boundaries",
    create: [],
    size: "5G",
    ops: [
      w(0x61, 4 * GiB - 1000, 3000),
      w(0x62, 2 * GiB - 65536 - 10, 131092),
      z(3 * GiB, MiB),
      w(0x63, 5 * GiB - 512, 512),
      z(4 * GiB + 65536, 131072),
    ],
    compareMap: true,
  },
  {
    name: "raw backing file, partial writes filled from it, zero clusters over it",
    create: ["-b", "base.raw", "-F", "raw", "-o", "cluster_size=16384"],
    size: "4M",
    backing: { name: "base.raw", bytes: 3 * MiB + 123, seed: 9 },
    ops: [
      w(0x71, 5000, 30000),
      z(65536, 65536), // aligned: zero clusters; never written into partially afterwards (§14.2)
      z(200000, 50000),
      w(0x73, 3 * MiB + 100, 1000),
      w(0x74, 4 * MiB - 10, 10),
    ],
    compareMap: false,
  },
];

for (const s of QEMU_SCENARIOS) {
  Deno.test({
    name: `qedstream reads what qemu-io writes: ${s.name}`,
    ignore,
    async fn() {
      await using dir = await tempDir();
      if (s.backing) {
        await writeRaw(`${dir.path}/${s.backing.name}`, noise(s.backing.bytes, s.backing.seed));
      }
      await runOk("qemu-img", [
        "create",
        "-q",
        "-f",
        "qed",
        ...s.create,
        "img.qed",
        ...(s.size ? [s.size] : []),
      ], dir.path);
      await runOk("qemu-io", [
        "-f",
        "qed",
        ...s.ops.flatMap((op) => ["-c", qemuIoCommand(op)]),
        "img.qed",
      ], dir.path);
      await runOk("qemu-img", ["convert", "-O", "raw", "img.qed", "flat.raw"], dir.path);
      await qedstreamReadsLike(`${dir.path}/img.qed`, `${dir.path}/flat.raw`);
      await qedstreamCheckClean(`${dir.path}/img.qed`);
      const info = await qedstream(["info", "--output", "json", "img.qed"], dir.path);
      assert.equal(
        info.stdout,
        await runOk("qemu-img", ["info", "--output=json", "img.qed"], dir.path),
      );
      if (s.compareMap) {
        const map = await qedstream(["map", "--output", "json", "img.qed"], dir.path);
        assert.equal(
          map.stdout,
          await runOk("qemu-img", ["map", "--output=json", "img.qed"], dir.path),
        );
        const human = await qedstream(["map", "img.qed"], dir.path);
        assert.equal(human.stdout, await runOk("qemu-img", ["map", "img.qed"], dir.path));
      }
      const check = await qedstream(["check", "img.qed"], dir.path);
      assert.equal(check.stdout, await runOk("qemu-img", ["check", "img.qed"], dir.path));
    },
  });
}

Deno.test({
  name: "qedstream reads a qed → qed → raw chain that qemu-io writes, with table size 16",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const q = (args: string[]) => runOk("qemu-img", args, dir.path);
    await writeRaw(`${dir.path}/base.raw`, noise(2 * MiB + 1000, 13));
    await q([
      "create",
      "-q",
      "-f",
      "qed",
      "-b",
      "base.raw",
      "-F",
      "raw",
      "-o",
      "cluster_size=4096,table_size=16",
      "mid.qed",
      "40M",
    ]);
    await q(["create", "-q", "-f", "qed", "-b", "mid.qed", "-F", "qed", "top.qed"]);
    await runOk("qemu-io", [
      "-c",
      "write -P 1 100 9000",
      "-c",
      "write -z 32M 64k",
      "-c",
      `write -P 2 ${32 * MiB - 100} 200`,
      "mid.qed",
    ], dir.path);
    await runOk("qemu-io", [
      "-c",
      "write -P 3 5000 70000",
      "-c",
      "write -z 1M 128k",
      "-c",
      "write -P 4 39M 1M",
      "top.qed",
    ], dir.path);
    await q(["convert", "-O", "raw", "top.qed", "flat.raw"]);
    await qedstreamReadsLike(`${dir.path}/top.qed`, `${dir.path}/flat.raw`);
    await qedstreamCheckClean(`${dir.path}/mid.qed`);
    await qedstreamCheckClean(`${dir.path}/top.qed`);
    const cmp = await qedstream(["compare", "top.qed", "flat.raw"], dir.path);
    assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
    for (const name of ["mid.qed", "top.qed"]) {
      const info = await qedstream(["info", "--output", "json", name], dir.path);
      assert.equal(info.stdout, await runOk("qemu-img", ["info", "--output=json", name], dir.path));
    }
  },
});

// ---------------------------------------------------------------------------
// Damaged images: the same verdict as qemu-img check

Deno.test({
  name: "qedstream check gives qemu-img check's output and exit code on damaged images",
  ignore,
  async fn() {
    await using dir = await tempDir();
    const p = (name: string) => `${dir.path}/${name}`;
    // Default geometry: data at 0x50000, L2 table at 0x60000..0xa0000, second data at 0xa0000.
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "good.qed", "10M"], dir.path);
    await runOk(
      "qemu-io",
      ["-c", "write -P 1 0 4k", "-c", "write -P 2 1M 4k", "good.qed"],
      dir.path,
    );
    const damages: [string, (path: string) => Promise<void>][] = [
      ["leak", async (path) => await Deno.truncate(path, (await Deno.stat(path)).size + 65536)],
      ["unaligned data offset", (path) => patchFile(path, 0x60000, u64(0x50800))],
      ["data offset past the end", (path) => patchFile(path, 0x60000, u64(0x500000))],
      ["cluster referenced twice", (path) => patchFile(path, 0x60000 + 16 * 8, u64(0x50000))],
      ["unaligned L1 entry", (path) => patchFile(path, 0x10000, u64(0x60200))],
    ];
    for (const [what, damage] of damages) {
      for (const args of [[], ["--output=json"], ["-r", "all"]]) {
        await Deno.copyFile(p("good.qed"), p("mine.qed"));
        await Deno.copyFile(p("good.qed"), p("theirs.qed"));
        await damage(p("mine.qed"));
        await damage(p("theirs.qed"));
        const qemu = await run("qemu-img", ["check", ...args, "theirs.qed"], dir.path);
        const ours = await qedstream(["check", ...args, "mine.qed"], dir.path);
        const label = `${what}, check ${args.join(" ")}`;
        assert.equal(ours.code, qemu.code, `${label}: ${ours.stderr}`);
        assert.equal(ours.stdout, qemu.stdout.replaceAll("theirs.qed", "mine.qed"), label);
        if (args[0] === "-r") {
          const a = await Deno.readFile(p("mine.qed"));
          const b = await Deno.readFile(p("theirs.qed"));
          assert.ok(Buffer.compare(a, b) === 0, `${label}: repaired files differ`);
        }
      }
    }
  },
});
