import assert from "node:assert/strict";
import { BlockDevice } from "../../block/device.ts";
import type { BlockNode } from "../../block/node.ts";
import { memOverlay, patternBytes, readAll, templateNode } from "./_fixtures.ts";

const KiB = 1024;
const MiB = 1 << 20;
const CS = 64 * KiB;

/** 1 MiB template: data, except zeros in clusters 2..3. */
async function setup() {
  const bytes = patternBytes(MiB, [
    { length: 2 * CS, fill: 0x10 },
    { length: 2 * CS, fill: 0 },
    { length: 12 * CS, fill: 0x20 },
  ]);
  const template = templateNode(bytes);
  const top = await memOverlay(template.node, { clusterSize: CS });
  return { bytes, top, device: new BlockDevice(top, { copyOnRead: true }) };
}

async function kinds(top: Awaited<ReturnType<typeof setup>>["top"]) {
  return (await top.image.map()).map((e) => [e.kind, e.offset, e.length]);
}

Deno.test("BlockDevice copy-on-read of 4k at 4k allocates the whole cluster with backing data", async () => {
  const { bytes, top, device } = await setup();
  const buf = new Uint8Array(4 * KiB);
  await device.read(4 * KiB, buf);
  assert.deepEqual(buf, bytes.subarray(4 * KiB, 8 * KiB));
  assert.deepEqual((await kinds(top))[0], ["data", 0, CS]);
  top.image.backing = null;
  const copied = new Uint8Array(CS);
  await top.image.read(0, copied);
  assert.deepEqual(copied, bytes.subarray(0, CS));
});

Deno.test("BlockDevice copy-on-read of 100k+200k copies clusters 1..4; the zero clusters as zeros only if the whole run is zero", async () => {
  const { bytes, top, device } = await setup();
  const buf = new Uint8Array(200 * KiB);
  await device.read(100 * KiB, buf);
  assert.deepEqual(buf, bytes.subarray(100 * KiB, 300 * KiB));
  // One run mixing data and zeros: written entirely as data, as qemu.
  const map = await kinds(top);
  assert.deepEqual(map.slice(0, 2), [["unallocated", 0, CS], ["data", CS, 4 * CS]]);
});

Deno.test("BlockDevice copy-on-read of an all-zero run makes zero clusters", async () => {
  const { top, device } = await setup();
  await device.read(128 * KiB, new Uint8Array(128 * KiB));
  assert.deepEqual((await kinds(top)).slice(0, 3), [
    ["unallocated", 0, 2 * CS],
    ["zero", 2 * CS, 2 * CS],
    ["unallocated", 4 * CS, MiB - 4 * CS],
  ]);
});

Deno.test("BlockDevice copy-on-read past the end of a short backing file makes zero clusters", async () => {
  const template = templateNode(new Uint8Array(100000).fill(7));
  const top = await memOverlay(template.node, { size: 8 * MiB, clusterSize: CS });
  const device = new BlockDevice(top, { copyOnRead: true });
  const buf = new Uint8Array(256 * KiB).fill(9);
  await device.read(MiB, buf);
  assert.ok(buf.every((b) => b === 0));
  assert.deepEqual((await top.image.map(MiB, 256 * KiB)).map((e) => e.kind), ["zero"]);
});

Deno.test("BlockDevice without copy-on-read reads through without allocating", async () => {
  const { bytes, top } = await setup();
  const device = new BlockDevice(top);
  assert.deepEqual(await readAll(device), bytes);
  assert.deepEqual(await kinds(top), [["unallocated", 0, MiB]]);
});

Deno.test("BlockDevice.blockStatus() reports top, chain depth and nowhere", async () => {
  const base = templateNode(new Uint8Array(MiB / 2).fill(1), "base");
  const mid = await memOverlay(base.node, { nodeName: "mid", size: MiB, clusterSize: CS });
  await mid.write(CS, new Uint8Array(CS).fill(2));
  const top = await memOverlay(mid, { nodeName: "top", size: MiB, clusterSize: CS });
  await top.write(2 * CS, new Uint8Array(CS).fill(3));
  await top.writeZeroes(3 * CS, CS);
  const device = new BlockDevice(top);
  const at = async (o: number) => {
    const st = await device.blockStatus(o, CS);
    return [st.kind, st.depth, st.node?.nodeName ?? null];
  };
  assert.deepEqual(await at(0), ["data", 2, "base"]);
  assert.deepEqual(await at(CS), ["data", 1, "mid"]);
  assert.deepEqual(await at(2 * CS), ["data", 0, "top"]);
  assert.deepEqual(await at(3 * CS), ["zero", 0, "top"]);
  // Past the end of the raw base: zeros synthesised at its level.
  assert.deepEqual(await at(MiB - CS), ["zero", 2, "base"]);
  const unbacked = new BlockDevice(await memOverlay(null, { size: MiB, clusterSize: CS }));
  const st = await unbacked.blockStatus(0, MiB);
  assert.deepEqual([st.kind, st.depth, st.length], ["unallocated", 1, MiB]);
});

Deno.test("BlockDevice copy-on-read with a bottom copies only data above the base", async () => {
  const base = templateNode(new Uint8Array(MiB).fill(1), "base");
  const mid = await memOverlay(base.node, { nodeName: "mid", clusterSize: CS });
  await mid.write(CS, new Uint8Array(CS).fill(2));
  const top = await memOverlay(mid, { nodeName: "top", clusterSize: CS });
  const device = new BlockDevice(top, { copyOnRead: { bottom: mid } });
  const buf = new Uint8Array(3 * CS);
  await device.read(0, buf);
  assert.ok(buf.subarray(0, CS).every((b) => b === 1));
  assert.ok(buf.subarray(CS, 2 * CS).every((b) => b === 2));
  assert.deepEqual((await top.image.map(0, 3 * CS)).map((e) => [e.kind, e.offset]), [
    ["unallocated", 0],
    ["data", CS],
    ["unallocated", 2 * CS],
  ]);
});

Deno.test("BlockDevice refuses copy-on-read on a read-only node and out-of-range requests", async () => {
  const template = templateNode(new Uint8Array(4096));
  assert.throws(() => new BlockDevice(template.node, { copyOnRead: true }), {
    message: "Can't use copy-on-read on read-only device",
  });
  const device = new BlockDevice(template.node);
  await assert.rejects(() => device.read(4000, new Uint8Array(200)), { code: "OUT_OF_RANGE" });
  await assert.rejects(() => device.write(0, new Uint8Array(1)), { code: "READ_ONLY" });
});

Deno.test("BlockDevice reads and writes at any offset and length", async () => {
  const { bytes, top } = await setup();
  const device = new BlockDevice(top, { copyOnRead: true });
  const model = bytes.slice();
  const data = new Uint8Array(70001).map((_, i) => (i * 7) & 0xff);
  await device.write(12345, data);
  model.set(data, 12345);
  await device.writeZeroes(200001, 99999);
  model.fill(0, 200001, 300000);
  const buf = new Uint8Array(333333);
  await device.read(777, buf);
  assert.deepEqual(buf, model.subarray(777, 777 + 333333));
  assert.deepEqual(await readAll(device), model);
});

Deno.test("BlockDevice copy-on-read bounces at most 16 MiB at a time", async () => {
  const bytes = new Uint8Array(40 * MiB).fill(0x42);
  const template = templateNode(bytes);
  const inner = await memOverlay(template.node, { clusterSize: CS });
  const writes: number[] = [];
  const spied: BlockNode = {
    nodeName: inner.nodeName,
    driver: inner.driver,
    filename: inner.filename,
    size: inner.size,
    readOnly: false,
    backing: inner.backing,
    clusterSize: CS,
    read: (o, b) => inner.read(o, b),
    write: (o, d) => (writes.push(d.length), inner.write(o, d)),
    writeZeroes: (o, n) => inner.writeZeroes(o, n),
    flush: () => inner.flush(),
    blockStatus: (o, n) => inner.blockStatus(o, n),
    close: () => inner.close(),
  };
  const device = new BlockDevice(spied, { copyOnRead: true });
  const buf = new Uint8Array(40 * MiB);
  await device.read(0, buf);
  assert.ok(buf.every((b) => b === 0x42));
  assert.deepEqual(writes, [16 * MiB, 16 * MiB, 8 * MiB]);
});
