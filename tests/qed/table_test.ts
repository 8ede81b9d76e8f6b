import assert from "node:assert/strict";
import {
  decodeTable,
  encodeTable,
  isValidClusterOffset,
  isValidTableOffset,
  L2Cache,
  qedGeometry,
  QedTable,
} from "../../qed/mod.ts";

Deno.test("encodeTable() writes little-endian u64 entries and decodeTable() reads them", () => {
  const bytes = encodeTable([0, 1, 0x50000, 2 ** 40 + 0x10000]);
  assert.deepEqual([...bytes.subarray(16, 24)], [0, 0, 5, 0, 0, 0, 0, 0]);
  assert.deepEqual([...bytes.subarray(24, 32)], [0, 0, 1, 0, 0, 1, 0, 0]);
  assert.deepEqual(decodeTable(bytes), [0, 1, 0x50000, 2 ** 40 + 0x10000]);
});

Deno.test("QedTable reads through a view with a byteOffset and reports its 512-byte sectors", () => {
  const backing = new Uint8Array(8 + 4096);
  const t = new QedTable(backing.subarray(8));
  t.set(70, 0xa0000);
  assert.equal(new DataView(backing.buffer).getUint32(8 + 70 * 8, true), 0xa0000);
  assert.equal(t.get(70), 0xa0000);
  assert.deepEqual(
    (({ offset, bytes }) => [offset, bytes.length])(t.sectorRange(70, 70)),
    [512, 512],
  );
  assert.deepEqual(
    (({ offset, bytes }) => [offset, bytes.length])(t.sectorRange(63, 64)),
    [0, 1024],
  );
});

Deno.test("isValidClusterOffset() applies qemu's alignment, header and EOF checks (§6.3)", () => {
  const g = qedGeometry({ clusterSize: 65536, tableSize: 4, headerSize: 1 });
  assert.equal(isValidClusterOffset(0x50000, g, 0xa0000), true);
  assert.equal(isValidClusterOffset(0x50800, g, 0xa0000), false);
  assert.equal(isValidClusterOffset(0, g, 0xa0000), false);
  assert.equal(isValidClusterOffset(0xa0000, g, 0xa0000), false);
  assert.equal(isValidClusterOffset(2 ** 60, g, 0xa0000), false);
});

Deno.test("isValidTableOffset() needs the whole table inside the file; table_size 1 is accepted", () => {
  const g = qedGeometry({ clusterSize: 65536, tableSize: 4, headerSize: 1 });
  assert.equal(isValidTableOffset(0x10000, g, 0x50000), true);
  assert.equal(isValidTableOffset(0x20000, g, 0x50000), false);
  assert.equal(isValidTableOffset(1, g, 0x50000), false);
  const one = qedGeometry({ clusterSize: 4096, tableSize: 1, headerSize: 1 });
  assert.equal(isValidTableOffset(4096, one, 8192), true);
  assert.equal(isValidTableOffset(8192, one, 8192), false);
});

Deno.test("L2Cache evicts the least recently used unpinned table", () => {
  const cache = new L2Cache(2);
  const [a, b, c] = [QedTable.empty(1), QedTable.empty(1), QedTable.empty(1)];
  cache.set(1, a);
  cache.set(2, b);
  cache.get(1);
  cache.set(3, c);
  assert.equal(cache.get(2), undefined);
  assert.equal(cache.get(1), a);
  cache.pin(1);
  cache.pin(3);
  cache.set(2, b);
  assert.equal(cache.size, 3, "pinned tables stay even above capacity");
  cache.unpin(1);
  cache.unpin(3);
  cache.set(4, QedTable.empty(1));
  assert.equal(cache.size, 2);
  assert.equal(new L2Cache().capacity, 50);
});
