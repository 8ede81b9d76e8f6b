/**
 * NbdServer and NbdClient spoken to byte by byte: the option and request
 * rules of the spec, the NBD_OPT_EXPORT_NAME fallback, and fuzzed or
 * mutated input on both sides (the peer stays up; errors are typed).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { seeds, tempDir } from "../_tools.ts";
import { NbdClient } from "../../nbd/client.ts";
import { NbdServer } from "../../nbd/server.ts";
import { streamPair } from "../../nbd/pipe.ts";
import { type NbdStream, StreamReader, StreamWriter } from "../../nbd/stream.ts";
import { concat } from "../../nbd/_bytes.ts";
import {
  NbdConnectionError,
  NbdOptionError,
  NbdProtocolError,
  NbdTimeoutError,
} from "../../nbd/error.ts";
import {
  decodeGreeting,
  encodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
  EXPORT_NAME_PADDING,
} from "../../nbd/handshake.ts";
import {
  decodeOptionHeader,
  encodeExportName,
  encodeExportRequest,
  encodeMetaContextRequest,
  encodeOption,
  OPTION_HEADER_SIZE,
} from "../../nbd/option.ts";
import {
  decodeInfoReply,
  decodeMetaContextReply,
  decodeOptionReplyHeader,
  encodeOptionReply,
  OPTION_REPLY_HEADER_SIZE,
} from "../../nbd/option_reply.ts";
import * as P from "../../nbd/protocol.ts";
import { decodeRequestHeader, encodeRequest, REQUEST_HEADER_SIZE } from "../../nbd/request.ts";
import {
  decodeChunkHeader,
  decodeChunkPayload,
  decodeSimpleReply,
  encodeChunk,
  encodeErrorChunk,
  encodeSimpleReply,
  replyHeaderSize,
} from "../../nbd/reply.ts";
import { MemoryTarget, pattern } from "./_nbd_tools.ts";

const MiB = 1024 * 1024;

function makeServer(): { server: NbdServer; target: MemoryTarget } {
  const server = new NbdServer({ handshakeTimeout: 2000 });
  const target = new MemoryTarget(MiB);
  target.load(pattern(MiB, 31));
  server.addExport({ name: "disk", target, description: "d" });
  server.addExport({ name: "ro", target: new MemoryTarget(MiB), readOnly: true });
  return { server, target };
}

/** A raw client on a pipe to `server`. */
function raw(server: NbdServer) {
  const [a, b] = streamPair();
  const done = server.serve(b);
  const reader = new StreamReader(a);
  const writer = new StreamWriter(a);
  const option = async (code: number, data?: Uint8Array) => {
    await writer.write(encodeOption(code, data));
  };
  const optionReply = async () => {
    const h = decodeOptionReplyHeader(await reader.readExact(OPTION_REPLY_HEADER_SIZE));
    return { ...h, data: await reader.readExact(h.length) };
  };
  const start = async (flags = P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES) => {
    assert.equal(decodeGreeting(await reader.readExact(18)), 3);
    await writer.write(encodeClientFlags(flags));
  };
  return { a, done, reader, writer, option, optionReply, start };
}

Deno.test("NbdServer handshake: options, replies and the export-name path follow the spec", async () => {
  const { server } = makeServer();
  const c = raw(server);
  await c.start();
  await c.option(99);
  assert.equal((await c.optionReply()).type, P.NBD_REP_ERR_UNSUP);
  await c.option(
    P.NBD_OPT_SET_META_CONTEXT,
    encodeMetaContextRequest({ name: "disk", queries: ["base:allocation"] }),
  );
  assert.equal(
    (await c.optionReply()).type,
    P.NBD_REP_ERR_INVALID,
    "meta context before structured replies",
  );
  await c.option(P.NBD_OPT_STRUCTURED_REPLY);
  assert.equal((await c.optionReply()).type, P.NBD_REP_ACK);
  await c.option(
    P.NBD_OPT_LIST_META_CONTEXT,
    encodeMetaContextRequest({ name: "disk", queries: ["base:"] }),
  );
  const listed = await c.optionReply();
  assert.equal(listed.type, P.NBD_REP_META_CONTEXT);
  assert.equal(decodeMetaContextReply(listed.data).name, "base:allocation");
  assert.equal((await c.optionReply()).type, P.NBD_REP_ACK);
  await c.option(P.NBD_OPT_INFO, encodeExportRequest({ name: "nope", infoRequests: [] }));
  assert.equal((await c.optionReply()).type, P.NBD_REP_ERR_UNKNOWN);
  await c.option(
    P.NBD_OPT_INFO,
    encodeExportRequest({ name: "disk", infoRequests: [P.NBD_INFO_NAME, P.NBD_INFO_DESCRIPTION] }),
  );
  const infos = [];
  for (;;) {
    const r = await c.optionReply();
    if (r.type === P.NBD_REP_ACK) break;
    assert.equal(r.type, P.NBD_REP_INFO);
    infos.push(decodeInfoReply(r.data));
  }
  assert.deepEqual(infos.map((i) => i.type).sort(), [0, 1, 2, 3]);
  await c.option(P.NBD_OPT_GO, new Uint8Array([0, 0, 0, 9, 1]));
  assert.equal((await c.optionReply()).type, P.NBD_REP_ERR_INVALID);
  // Still in negotiation after INFO: EXPORT_NAME enters transmission, without padding (NO_ZEROES).
  await c.option(P.NBD_OPT_EXPORT_NAME, encodeExportName("disk"));
  const reply = await c.reader.readExact(10);
  assert.deepEqual(
    reply,
    encodeExportNameReply({ size: MiB, flags: reply[9]! | (reply[8]! << 8) }, true),
  );
  await c.writer.write(
    encodeRequest({ flags: 0, type: P.NBD_CMD_DISC, cookie: 1n, offset: 0, length: 0 }),
  );
  await c.done;
  // Without NO_ZEROES the reply is padded; an unknown name is a hang-up.
  const d = raw(server);
  await d.start(P.NBD_FLAG_C_FIXED_NEWSTYLE);
  await d.option(P.NBD_OPT_EXPORT_NAME, encodeExportName("disk"));
  assert.equal((await d.reader.readExact(10 + EXPORT_NAME_PADDING)).length, 134);
  d.a.close();
  const e = raw(server);
  await e.start();
  await e.option(P.NBD_OPT_EXPORT_NAME, encodeExportName("missing"));
  assert.equal(await e.reader.read(1, true), null);
  await e.done;
  // Unknown client flags end the connection.
  const f = raw(server);
  await f.start(0x80);
  assert.equal(await f.reader.read(1, true), null);
  await server.close();
});

/** Enters transmission on `name` with structured replies and base:allocation. */
async function transmission(server: NbdServer, name: string, structured = true) {
  const c = raw(server);
  await c.start();
  if (structured) {
    await c.option(P.NBD_OPT_STRUCTURED_REPLY);
    await c.optionReply();
    await c.option(
      P.NBD_OPT_SET_META_CONTEXT,
      encodeMetaContextRequest({ name, queries: ["base:allocation"] }),
    );
    while ((await c.optionReply()).type !== P.NBD_REP_ACK);
  }
  await c.option(P.NBD_OPT_GO, encodeExportRequest({ name, infoRequests: [] }));
  while ((await c.optionReply()).type !== P.NBD_REP_ACK);
  let cookie = 100n;
  const request = async (
    type: number,
    offset: number,
    length: number,
    flags = 0,
    data?: Uint8Array,
  ) => {
    await c.writer.write(encodeRequest({ flags, type, cookie: ++cookie, offset, length }, data));
    const magic = await c.reader.readExact(4);
    const head = concat([magic, await c.reader.readExact(replyHeaderSize(magic) - 4)]);
    if (head.length === 16) {
      const r = decodeSimpleReply(head);
      assert.equal(r.cookie, cookie);
      return { error: r.error };
    }
    const h = decodeChunkHeader(head);
    assert.equal(h.cookie, cookie);
    const payload = decodeChunkPayload(h.type, await c.reader.readExact(h.length));
    return { error: "error" in payload ? payload.error : 0, payload };
  };
  return { ...c, request };
}

Deno.test("NbdServer transmission: EPERM, EINVAL, ENOSPC and block status by the spec's rules", async () => {
  const { server } = makeServer();
  const ro = await transmission(server, "ro");
  assert.equal((await ro.request(P.NBD_CMD_WRITE, 0, 4, 0, new Uint8Array(4))).error, P.NBD_EPERM);
  assert.equal((await ro.request(P.NBD_CMD_WRITE_ZEROES, 0, 4)).error, P.NBD_EPERM);
  assert.equal((await ro.request(P.NBD_CMD_TRIM, 0, 4)).error, P.NBD_EPERM);
  assert.equal((await ro.request(P.NBD_CMD_READ, 0, 4)).error, 0);
  const rw = await transmission(server, "disk");
  assert.equal((await rw.request(42, 0, 0)).error, P.NBD_EINVAL);
  assert.equal((await rw.request(P.NBD_CMD_READ, 0, 4, 0x40)).error, P.NBD_EINVAL);
  assert.equal((await rw.request(P.NBD_CMD_READ, MiB - 2, 4)).error, P.NBD_EINVAL);
  assert.equal(
    (await rw.request(P.NBD_CMD_WRITE, MiB - 2, 4, 0, new Uint8Array(4))).error,
    P.NBD_ENOSPC,
  );
  assert.equal((await rw.request(P.NBD_CMD_READ, 2 ** 52, 4)).error, P.NBD_EINVAL);
  assert.equal((await rw.request(P.NBD_CMD_TRIM, 0, 4096)).error, 0);
  assert.equal(
    (await rw.request(P.NBD_CMD_WRITE, 0, 4, P.NBD_CMD_FLAG_FUA, new Uint8Array(4))).error,
    0,
  );
  const status = await rw.request(P.NBD_CMD_BLOCK_STATUS, 0, MiB, P.NBD_CMD_FLAG_REQ_ONE);
  assert.deepEqual(status.payload, {
    type: P.NBD_REPLY_TYPE_BLOCK_STATUS,
    contextId: 0,
    extents: [{ length: MiB, flags: 0 }],
  });
  const simple = await transmission(server, "disk", false);
  assert.equal((await simple.request(P.NBD_CMD_BLOCK_STATUS, 0, 4)).error, P.NBD_EINVAL);
  assert.equal((await simple.request(P.NBD_CMD_READ, 0, 4, P.NBD_CMD_FLAG_DF)).error, P.NBD_EINVAL);
  for (const c of [ro, rw, simple]) c.a.close();
  await server.close();
});

/** A scripted fake server on a pipe: `script` runs against its end. */
function fakeServer(
  script: (reader: StreamReader, writer: StreamWriter, s: NbdStream) => Promise<void>,
) {
  return () => {
    const [a, b] = streamPair();
    script(new StreamReader(b), new StreamWriter(b), b).catch(() => {}).finally(() => b.close());
    return Promise.resolve(a);
  };
}

Deno.test("NbdClient falls back to NBD_OPT_EXPORT_NAME when NBD_OPT_GO is unsupported", async () => {
  const data = pattern(4096, 9);
  const connect = fakeServer(async (reader, writer) => {
    await writer.write(encodeGreeting(P.NBD_FLAG_FIXED_NEWSTYLE)); // no NO_ZEROES: padded reply
    await reader.readExact(4);
    for (;;) {
      const h = decodeOptionHeader(await reader.readExact(OPTION_HEADER_SIZE));
      await reader.readExact(h.length);
      if (h.option === P.NBD_OPT_EXPORT_NAME) break;
      await writer.write(encodeOptionReply(h.option, P.NBD_REP_ERR_UNSUP));
    }
    await writer.write(
      encodeExportNameReply(
        { size: 4096, flags: P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_READ_ONLY },
        false,
      ),
    );
    const r = decodeRequestHeader(await reader.readExact(REQUEST_HEADER_SIZE));
    await writer.write(
      encodeSimpleReply(
        { error: 0, cookie: r.cookie },
        data.subarray(r.offset, r.offset + r.length),
      ),
    );
    await reader.readExact(REQUEST_HEADER_SIZE); // DISC
  });
  const client = await NbdClient.connect({ connect, exportName: "old" });
  assert.ok(client.info.viaExportName);
  assert.equal(client.info.structuredReplies, false);
  assert.ok(client.readOnly);
  const buf = new Uint8Array(100);
  await client.read(50, buf);
  assert.deepEqual(buf, data.subarray(50, 150));
  await client.close();
});

Deno.test("NbdClient turns a bad chunk into a dropped connection and an error chunk into NbdRequestError", async () => {
  const connect = fakeServer(async (reader, writer) => {
    await writer.write(encodeGreeting(3));
    await reader.readExact(4);
    for (;;) {
      const h = decodeOptionHeader(await reader.readExact(OPTION_HEADER_SIZE));
      await reader.readExact(h.length);
      if (h.option === P.NBD_OPT_GO) {
        await writer.write(
          encodeOptionReply(
            h.option,
            P.NBD_REP_INFO,
            new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 1]),
          ),
          encodeOptionReply(h.option, P.NBD_REP_ACK),
        );
        break;
      }
      await writer.write(
        encodeOptionReply(
          h.option,
          h.option === P.NBD_OPT_STRUCTURED_REPLY ? P.NBD_REP_ACK : P.NBD_REP_ERR_UNSUP,
        ),
      );
    }
    const r1 = decodeRequestHeader(await reader.readExact(REQUEST_HEADER_SIZE));
    await writer.write(
      encodeChunk(
        { flags: 1, type: P.NBD_REPLY_TYPE_ERROR, cookie: r1.cookie },
        encodeErrorChunk(P.NBD_EIO, "disk on fire"),
      ),
    );
    const r2 = decodeRequestHeader(await reader.readExact(REQUEST_HEADER_SIZE));
    // Data outside the request: a protocol violation.
    const bad = new Uint8Array(8 + 4);
    new DataView(bad.buffer).setUint32(4, r2.offset + 100000);
    await writer.write(
      encodeChunk({ flags: 1, type: P.NBD_REPLY_TYPE_OFFSET_DATA, cookie: r2.cookie }, bad),
    );
    await reader.readExact(1);
  });
  const client = await NbdClient.connect({ connect, reconnect: false });
  assert.equal(client.info.baseAllocationId, null);
  await assert.rejects(client.read(0, new Uint8Array(4)), {
    code: "NBD_EIO",
    message: /disk on fire/,
  });
  await assert.rejects(client.read(0, new Uint8Array(4)), (e) => {
    assert.ok(e instanceof NbdConnectionError);
    assert.ok((e.cause as Error) instanceof NbdProtocolError);
    return true;
  });
  await assert.rejects(client.read(0, new Uint8Array(4)), { code: "NBD_DISCONNECTED" });
  await client.close();
});

/** A valid client conversation, as bytes, to be mutated. */
function validConversation(): Uint8Array {
  const parts = [
    encodeClientFlags(3),
    encodeOption(P.NBD_OPT_STRUCTURED_REPLY),
    encodeOption(
      P.NBD_OPT_SET_META_CONTEXT,
      encodeMetaContextRequest({ name: "disk", queries: ["base:allocation"] }),
    ),
    encodeOption(P.NBD_OPT_LIST),
    encodeOption(P.NBD_OPT_GO, encodeExportRequest({ name: "disk", infoRequests: [3] })),
    encodeRequest({ flags: 0, type: P.NBD_CMD_READ, cookie: 1n, offset: 0, length: 8192 }),
    encodeRequest(
      { flags: 0, type: P.NBD_CMD_WRITE, cookie: 2n, offset: 4096, length: 16 },
      new Uint8Array(16).fill(7),
    ),
    encodeRequest({ flags: 0, type: P.NBD_CMD_BLOCK_STATUS, cookie: 3n, offset: 0, length: MiB }),
    encodeRequest({ flags: 0, type: P.NBD_CMD_WRITE_ZEROES, cookie: 4n, offset: 0, length: 4096 }),
    encodeRequest({ flags: 0, type: P.NBD_CMD_FLUSH, cookie: 5n, offset: 0, length: 0 }),
    encodeRequest({ flags: 0, type: P.NBD_CMD_DISC, cookie: 6n, offset: 0, length: 0 }),
  ];
  return concat(parts);
}

const mutation = fc.oneof(
  fc.record({
    kind: fc.constant("flip" as const),
    at: fc.nat(),
    byte: fc.integer({ min: 0, max: 255 }),
  }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
);

interface Mutation {
  kind: string;
  at: number;
  byte?: number;
  bytes?: Uint8Array;
}

function mutate(base: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out: Uint8Array = base.slice();
  for (const m of mutations) {
    const at = m.at % (out.length + 1);
    if (m.kind === "flip" && at < out.length) out[at] = m.byte!;
    else if (m.kind === "cut") out = out.slice(0, at);
    else if (m.kind === "insert") out = concat([out.subarray(0, at), m.bytes!, out.subarray(at)]);
  }
  return out;
}

Deno.test("fuzz: random and mutated client bytes never crash NbdServer, and another client keeps working", async () => {
  const { server, target } = makeServer();
  const good = await NbdClient.connect({
    exportName: "disk",
    connect: () => {
      const [a, b] = streamPair();
      server.serve(b);
      return Promise.resolve(a);
    },
  });
  const base = validConversation();
  const input = fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.array(mutation, { minLength: 1, maxLength: 4 }).map((ms) => mutate(base, ms)),
  );
  let runs = 0;
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(input, fc.boolean(), async (bytes, hangUp) => {
        runs++;
        const [a, b] = streamPair();
        const served = server.serve(b);
        const drain = (async () => {
          const buf = new Uint8Array(65536);
          while ((await a.read(buf)) !== null);
        })();
        let at = 0;
        while (at < bytes.length) at += await a.write(bytes.subarray(at));
        if (hangUp) a.close();
        else setTimeout(() => a.close(), 5);
        await served; // resolves: the session never throws
        await drain;
        const check = new Uint8Array(16);
        await good.read(4096 * 100, check);
        assert.deepEqual(check, target.bytes.subarray(4096 * 100, 4096 * 100 + 16));
      }),
      { seed, numRuns: 150 },
    );
  }
  assert.ok(runs >= 300);
  assert.equal(server.connectionCount, 1);
  await good.close();
  await server.close();
});

Deno.test("fuzz: random server bytes make NbdClient fail with a typed error, never hang or crash", async () => {
  const typed = (e: unknown) =>
    e instanceof NbdProtocolError || e instanceof NbdConnectionError ||
    e instanceof NbdOptionError ||
    e instanceof NbdTimeoutError;
  const handshake = concat([
    encodeGreeting(3),
    encodeOptionReply(P.NBD_OPT_STRUCTURED_REPLY, P.NBD_REP_ACK),
    encodeOptionReply(
      P.NBD_OPT_SET_META_CONTEXT,
      P.NBD_REP_META_CONTEXT,
      new Uint8Array([0, 0, 0, 0, ...new TextEncoder().encode("base:allocation")]),
    ),
    encodeOptionReply(P.NBD_OPT_SET_META_CONTEXT, P.NBD_REP_ACK),
    encodeOptionReply(
      P.NBD_OPT_GO,
      P.NBD_REP_INFO,
      new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 1]),
    ),
    encodeOptionReply(P.NBD_OPT_GO, P.NBD_REP_ACK),
  ]);
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => mutate(handshake, ms)),
        ),
        fc.uint8Array({ maxLength: 200 }),
        async (hello, replies) => {
          const connect = fakeServer(async (_reader, writer) => {
            await writer.write(hello);
            await writer.write(replies);
          });
          let client: NbdClient;
          try {
            client = await NbdClient.connect({
              connect,
              reconnect: false,
              requestTimeout: 200,
              connectTimeout: 200,
            });
          } catch (e) {
            assert.ok(typed(e), String(e));
            return;
          }
          const results = await Promise.allSettled([
            client.read(0, new Uint8Array(Math.min(64, client.size))),
            client.blockStatus(0, Math.min(4096, client.size)),
          ]);
          for (const r of results) {
            if (r.status === "rejected") {
              assert.ok(typed(r.reason) || r.reason?.code?.startsWith?.("NBD_E"), String(r.reason));
            }
          }
          await client.close();
        },
      ),
      { seed, numRuns: 150 },
    );
  }
});

Deno.test("fuzz over a Unix socket: clients that send junk and hang up mid-reply never disturb the server", async () => {
  await using dir = await tempDir();
  const { server, target } = makeServer();
  const path = `${dir.path}/fuzz.sock`;
  server.listen({ type: "unix", path });
  const good = await NbdClient.connect({ address: { type: "unix", path }, exportName: "disk" });
  const base = validConversation();
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => mutate(base, ms)),
        ),
        async (bytes) => {
          const conn = await Deno.connect({ transport: "unix", path });
          try {
            await conn.write(bytes);
          } catch {
            // The server may already have hung up.
          }
          conn.close(); // unread replies make this a reset
          const check = new Uint8Array(16);
          await good.read(8192, check);
          assert.deepEqual(check, target.bytes.subarray(8192, 8192 + 16));
        },
      ),
      { seed, numRuns: 40 },
    );
  }
  await good.close();
  await server.close();
  assert.equal(server.connectionCount, 0);
});
