import assert from "node:assert/strict";
import { MemoryStorage } from "../../io/mod.ts";

Deno.test("MemoryStorage reads back writes and reads zeros in gaps", async () => {
  const s = new MemoryStorage();
  await s.write(70000, new Uint8Array([1, 2, 3]));
  assert.equal(await s.size(), 70003);
  const buf = new Uint8Array(10).fill(9);
  assert.equal(await s.read(69998, buf), 5);
  assert.deepEqual([...buf.subarray(0, 5)], [0, 0, 1, 2, 3]);
});

Deno.test("MemoryStorage.powerCut() keeps flushed writes and drops or tears the rest", async () => {
  const s = new MemoryStorage();
  await s.write(0, new Uint8Array(8).fill(1));
  await s.flush();
  await s.write(0, new Uint8Array(8).fill(2));
  await s.write(100, new Uint8Array(4).fill(3));
  const dropped = s.powerCut();
  assert.equal(await dropped.size(), 8);
  assert.deepEqual(dropped.snapshot(), new Uint8Array(8).fill(1));
  const torn = s.powerCut({ keep: (_w, i) => (i === 0 ? 3 : true) });
  const snap = torn.snapshot();
  assert.deepEqual([...snap.subarray(0, 8)], [2, 2, 2, 1, 1, 1, 1, 1]);
  assert.deepEqual([...snap.subarray(100, 104)], [3, 3, 3, 3]);
});

Deno.test("MemoryStorage truncate cuts and zero-extends", async () => {
  const s = new MemoryStorage(new Uint8Array(200000).fill(5));
  await s.truncate(70000);
  await s.truncate(140000);
  const buf = new Uint8Array(4);
  await s.read(69998, buf);
  assert.deepEqual([...buf], [5, 5, 0, 0]);
});
