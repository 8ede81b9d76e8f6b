/**
 * NbdServer's bounds against clients that stall, flood or lie, and
 * NbdClient's open-timeout.
 */
import assert from "node:assert/strict";
import { tempDir } from "../_tools.ts";
import { NbdClient } from "../../nbd/client.ts";
import { NbdServer } from "../../nbd/server.ts";
import { streamPair } from "../../nbd/pipe.ts";
import { StreamReader, StreamWriter } from "../../nbd/stream.ts";
import { encodeClientFlags } from "../../nbd/handshake.ts";
import { encodeExportRequest, encodeOption } from "../../nbd/option.ts";
import { decodeOptionReplyHeader, OPTION_REPLY_HEADER_SIZE } from "../../nbd/option_reply.ts";
import * as P from "../../nbd/protocol.ts";
import { encodeRequest } from "../../nbd/request.ts";
import { MemoryTarget, pattern } from "./_nbd_tools.ts";

const MiB = 1024 * 1024;

function rawConnection(server: NbdServer) {
  const [a, b] = streamPair();
  const done = server.serve(b);
  return { a, done, reader: new StreamReader(a), writer: new StreamWriter(a) };
}

async function enter(server: NbdServer, name = "disk") {
  const c = rawConnection(server);
  await c.reader.readExact(18);
  await c.writer.write(encodeClientFlags(3));
  await c.writer.write(encodeOption(P.NBD_OPT_GO, encodeExportRequest({ name, infoRequests: [] })));
  for (;;) {
    const h = decodeOptionReplyHeader(await c.reader.readExact(OPTION_REPLY_HEADER_SIZE));
    await c.reader.readExact(h.length);
    if (h.type === P.NBD_REP_ACK) return c;
  }
}

Deno.test("NbdServer drops a client that stalls in the handshake or sends too many options", async () => {
  const server = new NbdServer({ handshakeTimeout: 50, maxOptions: 5 });
  server.addExport({ name: "disk", target: new MemoryTarget(MiB) });
  const staller = rawConnection(server);
  await staller.reader.readExact(18);
  const t0 = performance.now();
  await staller.done;
  assert.ok(performance.now() - t0 < 1000);
  const chatty = rawConnection(server);
  await chatty.reader.readExact(18);
  await chatty.writer.write(encodeClientFlags(3));
  for (let i = 0; i < 10; i++) await chatty.writer.write(encodeOption(999)).catch(() => {});
  await chatty.done;
  assert.equal(server.connectionCount, 0);
  await server.close();
});

Deno.test("NbdServer hangs up on oversized options and writes instead of buffering them", async () => {
  const server = new NbdServer();
  server.addExport({ name: "disk", target: new MemoryTarget(MiB), maximumPayload: 65536 });
  const big = rawConnection(server);
  await big.reader.readExact(18);
  await big.writer.write(encodeClientFlags(3));
  const header = encodeOption(P.NBD_OPT_GO);
  new DataView(header.buffer).setUint32(12, 0xffffffff);
  await big.writer.write(header);
  await big.done;
  const c = await enter(server);
  await c.writer.write(
    encodeRequest({ flags: 0, type: P.NBD_CMD_WRITE, cookie: 1n, offset: 0, length: 65537 }),
  );
  await c.done;
  assert.equal(await c.reader.read(1, true), null);
  await server.close();
});

Deno.test("NbdServer stops reading while maxInFlight requests are served", async () => {
  const server = new NbdServer({ maxInFlight: 4 });
  const target = new MemoryTarget(MiB);
  target.load(pattern(MiB, 1));
  let release!: () => void;
  target.gate = new Promise((r) => (release = r));
  server.addExport({ name: "disk", target });
  const c = await enter(server);
  const flood = [];
  for (let i = 0; i < 64; i++) {
    flood.push(
      encodeRequest({ flags: 0, type: P.NBD_CMD_READ, cookie: BigInt(i), offset: 0, length: 512 }),
    );
  }
  await c.writer.write(...flood);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(target.maxActive, 4);
  release();
  target.gate = null;
  let replies = 0;
  while (replies < 64) {
    await c.reader.readExact(16 + 512);
    replies++;
  }
  assert.equal(target.maxActive, 4);
  c.a.close();
  await c.done;
  await server.close();
});

Deno.test("NbdServer refuses connections beyond maxConnections and keeps serving the others", async () => {
  const server = new NbdServer({ maxConnections: 2 });
  server.addExport({ name: "disk", target: new MemoryTarget(MiB) });
  const connect = () => {
    const [a, b] = streamPair();
    server.serve(b);
    return Promise.resolve(a);
  };
  const one = await NbdClient.connect({ connect, exportName: "disk" });
  const two = await NbdClient.connect({ connect, exportName: "disk" });
  await assert.rejects(
    NbdClient.connect({ connect, exportName: "disk" }),
    { code: "NBD_CONNECT_FAILED" },
  );
  await one.read(0, new Uint8Array(8));
  await one.close();
  await two.close();
  await server.close();
});

Deno.test("NbdClient.connect() keeps trying for openTimeout until the server appears", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/late.sock`;
  const server = new NbdServer();
  server.addExport({ name: "", target: new MemoryTarget(MiB) });
  await assert.rejects(
    NbdClient.connect({ address: { type: "unix", path } }),
    { code: "NBD_CONNECT_FAILED" },
  );
  setTimeout(() => server.listen({ type: "unix", path }), 100);
  const client = await NbdClient.connect({
    address: { type: "unix", path },
    openTimeout: 5000,
    backoffInitial: 20,
  });
  assert.equal(client.size, MiB);
  await client.close();
  await assert.rejects(
    NbdClient.connect({ address: { type: "unix", path }, exportName: "x", openTimeout: 5000 }),
    { code: "NBD_REP_ERR_UNKNOWN" },
  );
  await server.close();
});
