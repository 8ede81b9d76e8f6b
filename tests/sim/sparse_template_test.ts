import assert from "node:assert/strict";
import { SparseTemplate } from "../../sim/sparse_template.ts";

const MIB = 1024 * 1024;

Deno.test("SparseTemplate lays out aligned data regions without allocating the disk", () => {
  const t = new SparseTemplate({ size: 4096 * MIB, dataFraction: 0.05, seed: 9 });
  assert.equal(t.size, 4096 * MIB);
  assert.equal(t.extents[0]!.offset, 0);
  let end = -1;
  for (const e of t.extents) {
    assert.equal(e.offset % 65536, 0);
    assert.equal(e.length % 65536, 0);
    assert.ok(e.offset > end, "regions are sorted and do not touch");
    end = e.offset + e.length;
  }
  assert.ok(end <= t.size);
  const share = (t.dataBytes - 64 * MIB) / (t.size - 64 * MIB);
  assert.ok(share > 0.03 && share < 0.07, `data share ${share}`);
});

Deno.test("SparseTemplate bytes are repeatable, zero in holes, and consistent with blockStatus", () => {
  const a = new SparseTemplate({ size: 256 * MIB, bootRegionLength: MIB, seed: 2 });
  const b = new SparseTemplate({ size: 256 * MIB, bootRegionLength: MIB, seed: 2 });
  const other = new SparseTemplate({ size: 256 * MIB, bootRegionLength: MIB, seed: 3 });
  const x = new Uint8Array(8192);
  const y = new Uint8Array(8192);
  a.readSync(1000, x);
  b.readSync(1000, y);
  assert.deepEqual(x, y);
  other.readSync(1000, y);
  assert.notDeepEqual(x, y);
  // Unaligned reads agree with aligned ones.
  const whole = new Uint8Array(4096);
  a.readSync(0, whole);
  const part = new Uint8Array(13);
  a.readSync(7, part);
  assert.deepEqual(part, whole.subarray(7, 20));
  // Walk the statuses: holes read as zeros, data is not all zero.
  for (let at = 0; at < a.size;) {
    const st = a.statusSync(at, a.size - at);
    const probe = new Uint8Array(Math.min(4096, st.length));
    a.readSync(at, probe);
    if (st.kind === "unallocated") assert.ok(probe.every((v) => v === 0));
    else assert.ok(probe.some((v) => v !== 0));
    at += st.length;
  }
  // A read across a region boundary.
  const e = a.extents[1]!;
  const across = new Uint8Array(8192);
  a.readSync(e.offset - 4096, across);
  assert.ok(across.subarray(0, 4096).every((v) => v === 0));
  assert.ok(across.subarray(4096).some((v) => v !== 0));
});
