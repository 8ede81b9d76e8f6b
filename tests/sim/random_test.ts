import assert from "node:assert/strict";
import { Random } from "../../sim/random.ts";
import { percentile, summarize } from "../../sim/stats.ts";

Deno.test("Random repeats its sequence for a seed and differs between seeds", () => {
  const seq = (seed: number) => {
    const r = new Random(seed);
    return Array.from({ length: 20 }, () => r.uint32());
  };
  assert.deepEqual(seq(7), seq(7));
  assert.notDeepEqual(seq(7), seq(8));
});

Deno.test("Random.int() stays in [min, max) and covers the range", () => {
  const r = new Random(3);
  const seen = new Set<number>();
  for (let i = 0; i < 2000; i++) {
    const v = r.int(5, 15);
    assert.ok(v >= 5 && v < 15);
    seen.add(v);
  }
  assert.equal(seen.size, 10);
});

Deno.test("Random.fork() gives independent streams that depend only on seed and label", () => {
  const a = new Random(1).fork("x");
  const b = new Random(1).fork("x");
  const c = new Random(1).fork("y");
  const first = [a.uint32(), a.uint32()];
  assert.deepEqual(first, [b.uint32(), b.uint32()]);
  assert.notDeepEqual(first, [c.uint32(), c.uint32()]);
});

Deno.test("percentile() uses the nearest rank and summarize() reports the spread", () => {
  const sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  assert.equal(percentile(sorted, 50), 5);
  assert.equal(percentile(sorted, 90), 9);
  assert.equal(percentile(sorted, 99), 10);
  assert.equal(percentile([], 50), 0);
  const s = summarize([10, 1, 5]);
  assert.deepEqual([s.count, s.min, s.max, s.p50], [3, 1, 10, 5]);
  assert.equal(s.mean, 16 / 3);
  assert.equal(summarize([]).count, 0);
});
