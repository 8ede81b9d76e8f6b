/**
 * NbdClient against NbdServer, in memory and over a Unix socket: data,
 * block status, splitting and alignment, concurrency, errors, timeouts and
 * reconnection.
 */
import assert from "node:assert/strict";
import { tempDir } from "../_tools.ts";
import { NbdClient } from "../../nbd/client.ts";
import { NbdServer } from "../../nbd/server.ts";
import { streamPair } from "../../nbd/pipe.ts";
import type { NbdStream } from "../../nbd/stream.ts";
import {
  NbdConnectionError,
  NbdOptionError,
  NbdRequestError,
  NbdTimeoutError,
} from "../../nbd/error.ts";
import { GRANULE, memoryServer, MemoryTarget, pattern, pipeClient } from "./_nbd_tools.ts";

const MiB = 1024 * 1024;

Deno.test("NbdClient reads back what it wrote through NbdServer, split at the server's maximum payload", async () => {
  const { server, target } = memoryServer(8 * MiB, { maximumPayload: 64 * 1024 });
  const client = await pipeClient(server, { exportName: "disk" });
  assert.equal(client.size, 8 * MiB);
  assert.equal(client.info.maximumPayload, 64 * 1024);
  assert.ok(client.info.structuredReplies);
  assert.notEqual(client.info.baseAllocationId, null);
  const data = pattern(MiB + 12345, 1);
  await client.write(3 * MiB + 7, data);
  assert.ok(target.writes >= 16, "the write was split");
  const back = new Uint8Array(data.length);
  await client.read(3 * MiB + 7, back);
  assert.deepEqual(back, data);
  assert.deepEqual(target.bytes.subarray(3 * MiB + 7, 3 * MiB + 7 + data.length), data);
  await client.flush();
  assert.equal(target.flushes, 1);
  await client.close();
  await server.close();
});

Deno.test("NbdClient.blockStatus() reports holes, zeros and data of the export", async () => {
  const { server, target } = memoryServer(MiB);
  const client = await pipeClient(server, { exportName: "disk" });
  assert.deepEqual(await client.blockStatus(0, MiB), { kind: "zero", length: MiB });
  await client.write(64 * 1024, new Uint8Array(8192).fill(1));
  await client.writeZeroes(128 * 1024, 64 * 1024);
  assert.deepEqual(await client.blockStatus(0, MiB), { kind: "zero", length: 64 * 1024 });
  assert.deepEqual(await client.blockStatus(64 * 1024, MiB - 64 * 1024), {
    kind: "data",
    length: 8192,
  });
  assert.deepEqual(await client.blockStatus(64 * 1024 + 100, 50), { kind: "data", length: 50 });
  assert.equal(target.state[32], "zero");
  // Reads of holes come back as OFFSET_HOLE chunks and still read as zeros.
  const buf = new Uint8Array(256 * 1024).fill(9);
  await client.read(0, buf);
  assert.ok(buf.subarray(0, 64 * 1024).every((b) => b === 0));
  assert.ok(buf.subarray(64 * 1024, 72 * 1024).every((b) => b === 1));
  assert.ok(buf.subarray(72 * 1024).every((b) => b === 0));
  await client.close();
  await server.close();
});

Deno.test("NbdClient widens unaligned reads and does read-modify-write for unaligned writes", async () => {
  const { server, target } = memoryServer(64 * 1024, { minimumBlock: 512 });
  target.load(pattern(64 * 1024, 3));
  const expected = target.bytes.slice();
  const client = await pipeClient(server, { exportName: "disk" });
  assert.equal(client.info.minimumBlock, 512);
  const buf = new Uint8Array(1000);
  await client.read(1001, buf);
  assert.deepEqual(buf, expected.subarray(1001, 2001));
  const data = pattern(3000, 4);
  await client.write(700, data);
  expected.set(data, 700);
  await client.writeZeroes(5000, 3000);
  expected.fill(0, 5000, 8000);
  assert.deepEqual(target.bytes, expected);
  await client.close();
  await server.close();
});

Deno.test("NbdClient keeps many requests in flight and matches out-of-order replies by cookie", async () => {
  const { server, target } = memoryServer(MiB);
  target.load(pattern(MiB, 5));
  // Later offsets answer sooner, so replies come back in reverse order.
  target.readDelay = (offset) => 40 - Math.floor(offset / (32 * 1024));
  const client = await pipeClient(server, { exportName: "disk", maxInFlight: 8 });
  const reads = Array.from({ length: 32 }, (_, i) => {
    const buf = new Uint8Array(4096);
    return client.read(i * 32 * 1024, buf).then(() => [i, buf] as const);
  });
  for (const [i, buf] of await Promise.all(reads)) {
    assert.deepEqual(buf, target.bytes.subarray(i * 32 * 1024, i * 32 * 1024 + 4096));
  }
  assert.equal(target.maxActive, 8, "at most maxInFlight requests, and that many, at once");
  const order = target.readOrder;
  assert.ok(order.some((o, i) => i > 0 && o < order[i - 1]!), "replies arrived out of order");
  await client.close();
  await server.close();
});

Deno.test("NbdServer answers errors with the spec's values and the connection goes on", async () => {
  const server = new NbdServer();
  const ro = new MemoryTarget(MiB);
  const rw = new MemoryTarget(MiB);
  rw.failAt = [4096, 8192];
  server.addExport({ name: "ro", target: ro, readOnly: true });
  server.addExport({ name: "rw", target: rw });
  const a = await pipeClient(server, { exportName: "ro" });
  assert.ok(a.readOnly);
  await assert.rejects(a.write(0, new Uint8Array(1)), { code: "NBD_EPERM" });
  // A client that does not know the export is read-only gets EPERM from the server.
  const b = await pipeClient(server, { exportName: "rw" });
  await assert.rejects(b.read(4096, new Uint8Array(10)), (e) => {
    assert.ok(e instanceof NbdRequestError);
    assert.equal(e.code, "NBD_EIO");
    assert.equal(e.errno, 5);
    return true;
  });
  await assert.rejects(b.write(4096, new Uint8Array(10)), { code: "NBD_EIO" });
  await assert.rejects(b.read(MiB - 1, new Uint8Array(2)), { code: "NBD_EINVAL" });
  await b.read(0, new Uint8Array(10)); // still connected
  await assert.rejects(
    pipeClient(server, { exportName: "nope" }),
    (e) =>
      e instanceof NbdOptionError && e.code === "NBD_REP_ERR_UNKNOWN" && /nope/.test(e.message),
  );
  assert.deepEqual(
    (await NbdClient.list({ connect: () => pipePair(server) })).map((e) => e.name),
    [
      "ro",
      "rw",
    ],
  );
  await a.close();
  await b.close();
  await server.close();
});

function pipePair(server: NbdServer): Promise<NbdStream> {
  const [x, y] = streamPair();
  server.serve(y);
  return Promise.resolve(x);
}

Deno.test("NbdClient works without structured replies (simple replies, no block status)", async () => {
  const { server, target } = memoryServer(MiB);
  target.load(pattern(MiB, 6));
  const client = await pipeClient(server, { exportName: "disk", structuredReplies: false });
  assert.equal(client.info.structuredReplies, false);
  assert.equal(client.info.baseAllocationId, null);
  const buf = new Uint8Array(100000);
  await client.read(12345, buf);
  assert.deepEqual(buf, target.bytes.subarray(12345, 112345));
  assert.deepEqual(await client.blockStatus(0, MiB), { kind: "data", length: MiB });
  await assert.rejects(client.read(MiB - 10, new Uint8Array(20)), { code: "NBD_EINVAL" });
  await client.close();
  await server.close();
});

Deno.test("a request that gets no reply in time fails with NbdTimeoutError and the client reconnects", async () => {
  const { server, target } = memoryServer(MiB);
  const events: string[] = [];
  const client = await pipeClient(server, {
    exportName: "disk",
    requestTimeout: 50,
    backoffInitial: 5,
    onEvent: (e) => events.push(e.type),
  });
  let release!: () => void;
  target.gate = new Promise((r) => (release = r));
  await assert.rejects(client.read(0, new Uint8Array(10)), NbdTimeoutError);
  target.gate = null;
  release();
  for (let i = 0; i < 100 && !client.connected; i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(client.connected);
  await client.read(0, new Uint8Array(10));
  assert.deepEqual(events, ["disconnected", "reconnected"]);
  await client.close();
  await server.close();
});

Deno.test("NbdClient over a Unix socket: a server restart fails requests, or retries them with reconnectDelay", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/nbd.sock`;
  const target = new MemoryTarget(MiB);
  target.load(pattern(MiB, 7));
  const start = () => {
    const s = new NbdServer();
    s.addExport({ name: "t", target });
    s.listen({ type: "unix", path });
    return s;
  };
  let server = start();
  const failing = await NbdClient.connect({
    address: { type: "unix", path },
    exportName: "t",
    backoffInitial: 10,
  });
  const patient = await NbdClient.connect({
    address: { type: "unix", path },
    exportName: "t",
    reconnectDelay: 5000,
    backoffInitial: 10,
  });
  await server.close();
  await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(
    failing.read(0, new Uint8Array(10)),
    (e) => e instanceof NbdConnectionError && e.code === "NBD_DISCONNECTED",
  );
  const buf = new Uint8Array(4096);
  const waiting = patient.read(8192, buf);
  await new Promise((r) => setTimeout(r, 50));
  server = start();
  await waiting;
  assert.deepEqual(buf, target.bytes.subarray(8192, 8192 + 4096));
  for (let i = 0; i < 200 && !failing.connected; i++) await new Promise((r) => setTimeout(r, 5));
  await failing.read(0, new Uint8Array(10)); // reconnected in the background
  await failing.close();
  await patient.close();
  await assert.rejects(patient.read(0, new Uint8Array(1)), { code: "NBD_CLOSED" });
  await server.close();
});

Deno.test("NbdServer serves several connections and TCP on loopback", async () => {
  const { server, target } = memoryServer(MiB);
  const address = server.listen({ type: "inet", host: "127.0.0.1", port: 0 });
  assert.ok(address.type === "inet" && address.port > 0);
  const clients = await Promise.all(
    [0, 1, 2, 3].map(() => NbdClient.connect({ address, exportName: "disk" })),
  );
  assert.equal(server.connectionCount, 4);
  await Promise.all(
    clients.map((c, i) => c.write(i * GRANULE, new Uint8Array(GRANULE).fill(i + 1))),
  );
  for (const c of clients) {
    const buf = new Uint8Array(4 * GRANULE);
    await c.read(0, buf);
    for (let i = 0; i < 4; i++) assert.equal(buf[i * GRANULE], i + 1);
  }
  assert.equal(target.bytes[3 * GRANULE], 4);
  await Promise.all(clients.map((c) => c.close()));
  await server.close();
});
