/**
 * Fuzzing: valid images with mutated header bytes, L1/L2 entries, backing
 * names and lengths are opened, read, written, checked and closed. Only
 * typed errors (QedstreamError subclasses) may escape; nothing may hang or
 * write to the backing file; every successful read must equal what a small,
 * independent reference reader derives from the same bytes.
 */

import fc from "fast-check";
import assert from "node:assert/strict";
import { MemoryStorage, QedstreamError } from "../../io/mod.ts";
import { QedImage, RawImage } from "../../qed/mod.ts";
import { seeds } from "../_tools.ts";
import { assertBytes, pattern, RecordingStorage } from "./_helpers.ts";

const K = 1024;

interface Sample {
  name: string;
  bytes: Uint8Array;
  base: Uint8Array | null;
  l2Tables: number[];
}

async function samples(): Promise<Sample[]> {
  const out: Sample[] = [];
  {
    const disk = new MemoryStorage();
    await QedImage.create(disk, { size: 2 << 20 });
    const image = await QedImage.open(disk);
    await image.write(0, pattern(100 * K, 1));
    await image.writeZeroes(256 * K, 128 * K);
    await image.write(1 << 20, pattern(70 * K, 2));
    await image.close();
    out.push({ name: "plain", bytes: disk.snapshot(), base: null, l2Tables: [0x60000] });
  }
  {
    const base = pattern(3 << 20, 3);
    const backing = await RawImage.open(new MemoryStorage(base), { readOnly: true });
    const disk = new MemoryStorage();
    await QedImage.create(disk, {
      size: 6 << 20,
      clusterSize: 4096,
      tableSize: 2,
      backingFile: "base.raw",
      backingFormat: "raw",
    });
    const image = await QedImage.open(disk, { backing });
    await image.write(4 * K + 5, pattern(30 * K, 4));
    await image.writeZeroes(64 * K, 16 * K);
    await image.write((4 << 20) - 6000, pattern(12000, 5));
    await image.close();
    const l1 = new DataView(disk.snapshot().buffer, 4096, 16);
    out.push({
      name: "backed",
      bytes: disk.snapshot(),
      base,
      l2Tables: [l1.getUint32(0, true), l1.getUint32(8, true)],
    });
  }
  return out;
}

type Mutation =
  | { kind: "byte"; at: number; value: number }
  | { kind: "field"; at: number; width: 4 | 8; value: bigint }
  | { kind: "l1"; index: number; value: bigint }
  | { kind: "l2"; table: number; index: number; value: bigint }
  | { kind: "name"; size: number; text: string }
  | { kind: "length"; cut: number };

function interesting(s: Sample, cs: number): fc.Arbitrary<bigint> {
  const len = s.bytes.length;
  return fc.oneof(
    fc.constantFrom(
      0,
      1,
      2,
      512,
      cs,
      cs / 2,
      len,
      len - cs,
      len + cs,
      0x10000,
      0x50000,
      0x50800,
      4096,
      ...s.l2Tables,
    )
      .map((n) => BigInt(n)),
    fc.constantFrom(2n ** 32n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n),
    fc.nat(len * 2).map((n) => BigInt(n)),
    fc.nat(len / cs).map((n) => BigInt(n * cs)),
  );
}

function mutationArb(s: Sample, cs: number): fc.Arbitrary<Mutation> {
  const value = interesting(s, cs);
  return fc.oneof(
    fc.record({ kind: fc.constant("byte" as const), at: fc.nat(127), value: fc.nat(255) }),
    fc.record({
      kind: fc.constant("field" as const),
      at: fc.constantFrom(4, 8, 12, 56, 60),
      width: fc.constant(4 as const),
      value: fc.oneof(value, fc.constantFrom(0n, 1n, 3n, 4096n, 65536n, 0xffffffffn)).map((v) =>
        v & 0xffffffffn
      ),
    }),
    fc.record({
      kind: fc.constant("field" as const),
      at: fc.constantFrom(16, 24, 32, 40, 48),
      width: fc.constant(8 as const),
      value,
    }),
    fc.record({ kind: fc.constant("l1" as const), index: fc.nat(3), value }),
    fc.record({
      kind: fc.constant("l2" as const),
      table: fc.nat(s.l2Tables.length - 1),
      index: fc.oneof(fc.nat(40), fc.integer({ min: 1000, max: 1030 })),
      value,
    }),
    fc.record({
      kind: fc.constant("name" as const),
      size: fc.constantFrom(0, 3, 8, 100, 4095, 4096, 70000),
      text: fc.string({ maxLength: 20 }),
    }),
    fc.record({
      kind: fc.constant("length" as const),
      cut: fc.integer({ min: -70000, max: 70000 }),
    }),
  );
}

function apply(bytes: Uint8Array, s: Sample, m: Mutation): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const l1 = bytes.length >= 48 ? Number(view.getBigUint64(40, true)) : 0;
  const put = (at: number, v: bigint) => {
    if (at + 8 <= bytes.length) view.setBigUint64(at, BigInt.asUintN(64, v), true);
  };
  switch (m.kind) {
    case "byte":
      if (m.at < bytes.length) bytes[m.at] = m.value;
      return bytes;
    case "field":
      if (m.width === 8) put(m.at, m.value);
      else if (m.at + 4 <= bytes.length) view.setUint32(m.at, Number(m.value), true);
      return bytes;
    case "l1":
      put(l1 + m.index * 8, m.value);
      return bytes;
    case "l2":
      put(s.l2Tables[m.table]! + m.index * 8, m.value);
      return bytes;
    case "name": {
      if (bytes.length < 64 + 4096) return bytes;
      view.setUint32(60, m.size, true);
      const text = new TextEncoder().encode(m.text);
      bytes.set(text.subarray(0, Math.max(0, Math.min(text.length, 4096 - 64))), 64);
      return bytes;
    }
    case "length": {
      const len = Math.max(0, bytes.length + m.cut);
      const out = new Uint8Array(len);
      out.set(bytes.subarray(0, Math.min(len, bytes.length)));
      return out;
    }
  }
}

/** A deliberately plain reader of QED bytes: the oracle. `null` where qemu answers EINVAL. */
function referenceRead(
  file: Uint8Array,
  fileSize: number,
  base: Uint8Array | null,
  pos: number,
  len: number,
): Uint8Array | null {
  const v = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const u64 = (at: number) => at + 8 <= file.length ? Number(v.getBigUint64(at, true)) : 0;
  const cs = v.getUint32(4, true);
  const ts = v.getUint32(8, true);
  const hs = v.getUint32(12, true);
  const l1 = u64(40);
  const nelems = cs * ts / 8;
  const validCluster = (o: number) => o % cs === 0 && o >= hs * cs && o < fileSize;
  const validTable = (o: number) => validCluster(o) && validCluster(o + (ts - 1) * cs);
  const out = new Uint8Array(len);
  for (let p = pos; p < pos + len;) {
    const within = p % cs;
    const n = Math.min(cs - within, pos + len - p);
    const l2 = u64(l1 + Math.floor(p / (nelems * cs)) * 8);
    let source: "backing" | "zero" | number = "backing";
    if (l2 !== 0) {
      if (!validTable(l2)) return null;
      const entry = u64(l2 + Math.floor((p % (nelems * cs)) / cs) * 8);
      if (entry === 1) source = "zero";
      else if (entry !== 0) {
        if (!validCluster(entry)) return null;
        source = entry;
      }
    }
    for (let i = 0; i < n; i++) {
      const q = p + i;
      out[q - pos] = source === "zero"
        ? 0
        : source === "backing"
        ? (base && q < base.length ? base[q]! : 0)
        : (file[source + within + i] ?? 0);
    }
    p += n;
  }
  return out;
}

function withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} hangs`)), 10_000);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Runs `step`; a typed error is fine (returns `undefined`), anything else fails. */
async function typed<T>(what: string, step: () => Promise<T>): Promise<T | undefined> {
  try {
    return await withTimeout(step(), what);
  } catch (e) {
    if (e instanceof QedstreamError) return undefined;
    throw new Error(`${what} threw a non-typed error: ${e}`, { cause: e });
  }
}

Deno.test("fuzzed QED images give typed errors or reads that match a reference reader", async () => {
  const all = await samples();
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.nat(all.length - 1).chain((i) => {
          const s = all[i]!;
          const cs = new DataView(s.bytes.buffer).getUint32(4, true);
          return fc.tuple(
            fc.constant(i),
            fc.array(mutationArb(s, cs), { minLength: 1, maxLength: 4 }),
            fc.boolean(),
            fc.array(
              fc.tuple(
                fc.double({ min: 0, max: 1, noNaN: true }),
                fc.integer({ min: 1, max: 70000 }),
              ),
              {
                minLength: 1,
                maxLength: 4,
              },
            ),
          );
        }),
        async ([sample, mutations, readOnly, spots]) => {
          const s = all[sample]!;
          let bytes: Uint8Array = s.bytes.slice();
          for (const m of mutations) bytes = apply(bytes, s, m);
          const disk = new MemoryStorage(bytes);
          const baseStore = s.base ? new RecordingStorage(new MemoryStorage(s.base)) : null;
          if (baseStore) baseStore.forbidWrites = true;
          const backing = baseStore ? await RawImage.open(baseStore, { readOnly: true }) : null;
          const image = await typed(
            "open",
            () => QedImage.open(disk, { readOnly, backing, l2CacheSize: 2 }),
          );
          if (!image) {
            if (readOnly) {
              assertBytes(disk.snapshot(), bytes, "a failed read-only open writes nothing");
            }
            return;
          }
          const size = image.size;
          const ranges = [
            [0, Math.min(size, 200 * K)],
            ...spots.map(([f, l]) => {
              const pos = Math.floor(f * size);
              return [pos, Math.min(l, size - pos)];
            }),
          ] as [number, number][];
          // Reads first, against the bytes as they are after the open (which may have repaired).
          const now = disk.snapshot();
          for (const [pos, len] of ranges) {
            const expected = referenceRead(now, image.fileSize, s.base, pos, len);
            const buf = new Uint8Array(len);
            const ok: boolean | undefined = await typed("read", async () => {
              await image.read(pos, buf);
              return true;
            });
            if (expected === null) assert.equal(ok, undefined, `read(${pos}, ${len}) should fail`);
            else {
              assert.equal(ok, true, `read(${pos}, ${len}) should succeed`);
              assertBytes(buf, expected, `read(${pos}, ${len})`);
            }
          }
          await typed("map", () => image.map(0, Math.min(size, 64 << 20)));
          // Writes read back whenever the check finds the metadata consistent
          // (with aliased metadata, guest data may land in a table, as in qemu).
          const before = await typed("check", () => image.check());
          const consistent = before !== undefined && before.corruptions === 0;
          if (!readOnly) {
            for (const [pos, len] of ranges) {
              const data = pattern(len, pos);
              const wrote: boolean | undefined = await typed("write", async () => {
                await image.write(pos, data);
                return true;
              });
              if (wrote && consistent) {
                const back = new Uint8Array(len);
                await image.read(pos, back);
                assertBytes(back, data, `read after write(${pos}, ${len})`);
              }
              await typed("writeZeroes", () => image.writeZeroes(pos, Math.min(len, 9000)));
            }
            await typed("changeBackingFile", () => image.changeBackingFile("other.raw", "raw"));
          }
          await typed("check", () => image.check());
          if (!readOnly) await typed("repair", () => image.check({ repair: "all" }));
          await typed("close", () => image.close());
          assert.ok(disk.snapshot().length <= bytes.length + (80 << 20), "the file stays bounded");
        },
      ),
      { seed, numRuns: 400 },
    );
  }
});
