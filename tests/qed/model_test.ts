/**
 * Model-based test: random sequences of writes, zero writes, reads, flushes,
 * concurrent batches and close/reopen on QED images of random geometry, over
 * no backing file, a raw one or a QED-over-raw chain, checked against a flat
 * byte array. Every run ends with a clean check (no leaks, no corruption).
 */

import fc from "fast-check";
import assert from "node:assert/strict";
import { MemoryStorage } from "../../io/mod.ts";
import { type BackingImage, QedImage, RawImage } from "../../qed/mod.ts";
import { seeds } from "../_tools.ts";
import { assertBytes, pattern } from "./_helpers.ts";

interface Setup {
  clusterSize: number;
  tableSize: number;
  size: number;
  backing: "none" | "raw" | "qed";
  backingSize: number;
  backingCluster: number;
}

interface Model {
  bytes: Uint8Array;
  span: number;
}

interface Real {
  disk: MemoryStorage;
  image: QedImage;
  backing: BackingImage | null;
}

/** A position relative to an interesting place: 0, an L2 boundary, the end, or anywhere. */
interface Where {
  hot: 0 | 1 | 2 | 3;
  frac: number;
  delta: number;
}

function resolve(m: Model, where: Where, len: number): [number, number] {
  const size = m.bytes.length;
  const anchor = [0, m.span, size, Math.floor(where.frac * size)][where.hot]!;
  const pos = Math.max(0, Math.min(size, anchor + where.delta));
  return [pos, Math.min(len, size - pos)];
}

const whereArb: fc.Arbitrary<Where> = fc.record({
  hot: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
  frac: fc.double({ min: 0, max: 1, noNaN: true }),
  delta: fc.integer({ min: -140000, max: 140000 }),
});
const lenArb = fc.oneof(
  fc.integer({ min: 1, max: 5000 }),
  fc.integer({ min: 1, max: 140000 }),
  fc.constantFrom(4096, 65536, 131072, 512),
);

class WriteCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly where: Where, readonly len: number, readonly seed: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const [pos, len] = resolve(m, this.where, this.len);
    const data = pattern(len, this.seed);
    await r.image.write(pos, data);
    m.bytes.set(data, pos);
  }
  toString = () => `write(${JSON.stringify(this.where)}, ${this.len})`;
}

class ZeroCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly where: Where, readonly len: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const [pos, len] = resolve(m, this.where, this.len);
    await r.image.writeZeroes(pos, len);
    m.bytes.fill(0, pos, pos + len);
  }
  toString = () => `zero(${JSON.stringify(this.where)}, ${this.len})`;
}

class ReadCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly where: Where, readonly len: number) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const [pos, len] = resolve(m, this.where, this.len);
    const buf = new Uint8Array(len).fill(0xee);
    await r.image.read(pos, buf);
    assertBytes(buf, m.bytes.subarray(pos, pos + len), `read(${pos}, ${len})`);
  }
  toString = () => `read(${JSON.stringify(this.where)}, ${this.len})`;
}

class MapCmd implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    let pos = 0;
    for (const e of await r.image.map()) {
      assert.equal(e.offset, pos);
      if (e.kind === "zero" || (e.kind === "unallocated" && r.backing === null)) {
        const part = m.bytes.subarray(e.offset, e.offset + e.length);
        assert.ok(part.every((b) => b === 0), `${e.kind} run at ${e.offset} reads zeros`);
      }
      pos += e.length;
    }
    assert.equal(pos, m.bytes.length);
  }
  toString = () => "map()";
}

class FlushCmd implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    await r.image.flush();
    assert.equal(r.image.needsCheck, false);
  }
  toString = () => "flush()";
}

class ReopenCmd implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(_m: Model, r: Real): Promise<void> {
    await r.image.close();
    r.disk = r.disk.clone();
    r.image = await QedImage.open(r.disk, { backing: r.backing, l2CacheSize: 2 });
  }
  toString = () => "reopen()";
}

/** Several writes, zero writes and reads issued at once over disjoint slices. */
class BatchCmd implements fc.AsyncCommand<Model, Real> {
  constructor(readonly ops: { kind: 0 | 1 | 2; frac: number; len: number; seed: number }[]) {}
  check = () => true;
  async run(m: Model, r: Real): Promise<void> {
    const n = this.ops.length;
    const slice = Math.floor(m.bytes.length / n);
    const pending: Promise<void>[] = [];
    const after: (() => void)[] = [];
    this.ops.forEach((op, k) => {
      const pos = k * slice + Math.floor(op.frac * slice);
      const len = Math.min(op.len, (k + 1) * slice - pos);
      if (len <= 0) return;
      if (op.kind === 0) {
        const data = pattern(len, op.seed);
        m.bytes.set(data, pos);
        pending.push(r.image.write(pos, data));
      } else if (op.kind === 1) {
        m.bytes.fill(0, pos, pos + len);
        pending.push(r.image.writeZeroes(pos, len));
      } else {
        const buf = new Uint8Array(len);
        const want = m.bytes.slice(pos, pos + len);
        pending.push(r.image.read(pos, buf));
        after.push(() => assertBytes(buf, want, `batch read(${pos}, ${len})`));
      }
    });
    await Promise.all(pending);
    for (const f of after) f();
  }
  toString = () => `batch(${JSON.stringify(this.ops)})`;
}

const commands = [
  fc.tuple(whereArb, lenArb, fc.nat(255)).map(([w, l, s]) => new WriteCmd(w, l, s)),
  fc.tuple(whereArb, lenArb).map(([w, l]) => new ZeroCmd(w, l)),
  fc.tuple(whereArb, lenArb).map(([w, l]) => new ReadCmd(w, l)),
  fc.constant(new MapCmd()),
  fc.constant(new FlushCmd()),
  fc.constant(new ReopenCmd()),
  fc.array(
    fc.record({
      kind: fc.constantFrom(0 as const, 1 as const, 2 as const),
      frac: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
      len: lenArb,
      seed: fc.nat(255),
    }),
    { minLength: 2, maxLength: 6 },
  ).map((ops) => new BatchCmd(ops)),
];

const setupArb: fc.Arbitrary<Setup> = fc.record({
  clusterSize: fc.constantFrom(4096, 8192, 16384, 32768, 65536),
  tableSize: fc.constantFrom(2, 4, 8, 16),
  size: fc.integer({ min: 1, max: 24 * 1024 }).map((n) => n * 512),
  backing: fc.constantFrom("none" as const, "raw" as const, "qed" as const),
  backingSize: fc.integer({ min: 0, max: 12 << 20 }),
  backingCluster: fc.constantFrom(4096, 65536),
}).map((s) => {
  // Make images that cross an L2 boundary when the geometry allows it cheaply.
  const span = s.clusterSize * s.tableSize * s.clusterSize / 8;
  return span <= 8 << 20 && s.size > 6 << 20
    ? { ...s, size: span + Math.ceil((s.size % span) / 1024) * 512 }
    : s;
});

async function build(setup: Setup): Promise<{ model: Model; real: Real }> {
  const bytes = new Uint8Array(setup.size);
  let backing: BackingImage | null = null;
  if (setup.backing !== "none") {
    const baseBytes = pattern(setup.backingSize, 77);
    const raw = await RawImage.open(new MemoryStorage(baseBytes), { readOnly: true });
    backing = raw;
    let visible = baseBytes;
    if (setup.backing === "qed") {
      const mid = new MemoryStorage();
      const midSize = Math.ceil(setup.backingSize / 512) * 512;
      await QedImage.create(mid, {
        size: midSize,
        clusterSize: setup.backingCluster,
        backingFile: "base.raw",
        backingFormat: "raw",
      });
      const qed = await QedImage.open(mid, { backing: raw });
      visible = new Uint8Array(midSize);
      visible.set(baseBytes);
      for (let at = 0; at + 3000 < midSize; at += 1_000_003) {
        const data = pattern(3000, at);
        await qed.write(at, data);
        visible.set(data, at);
      }
      await qed.writeZeroes(0, Math.min(midSize, setup.backingCluster * 2));
      visible.fill(0, 0, Math.min(midSize, setup.backingCluster * 2));
      await qed.close();
      backing = await QedImage.open(mid.clone(), { readOnly: true, backing: raw });
    }
    bytes.set(visible.subarray(0, Math.min(visible.length, bytes.length)));
  }
  const disk = new MemoryStorage();
  await QedImage.create(disk, {
    size: setup.size,
    clusterSize: setup.clusterSize,
    tableSize: setup.tableSize,
    ...(backing
      ? { backingFile: "backing", backingFormat: setup.backing === "raw" ? "raw" : "qed" }
      : {}),
  });
  const image = await QedImage.open(disk, { backing, l2CacheSize: 2 });
  const span = setup.clusterSize * setup.tableSize * setup.clusterSize / 8;
  return { model: { bytes, span }, real: { disk, image, backing } };
}

Deno.test("`QedImage` behaves like a flat byte array under random command sequences", async () => {
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        setupArb,
        fc.commands(commands, { maxCommands: 25 }),
        async (setup, cmds) => {
          const { model, real } = await build(setup);
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          const result = await real.image.check();
          assert.equal(result.corruptions, 0, "no corruption");
          assert.equal(result.leaks, 0, "no leak");
          const all = new Uint8Array(model.bytes.length);
          await real.image.read(0, all);
          assertBytes(all, model.bytes, "whole image");
          await real.image.close();
          const reopened = await QedImage.open(real.disk.clone(), { readOnly: true });
          assert.equal(reopened.needsCheck, false, "closed clean");
        },
      ),
      { seed, numRuns: 80 },
    );
  }
});
