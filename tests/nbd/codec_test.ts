import assert from "node:assert/strict";
import fc from "fast-check";
import { seeds } from "../_tools.ts";
import {
  decodeClientFlags,
  decodeExportNameReply,
  decodeGreeting,
  encodeClientFlags,
  encodeExportNameReply,
  encodeGreeting,
  EXPORT_NAME_REPLY_SIZE,
} from "../../nbd/handshake.ts";
import {
  decodeExportName,
  decodeExportRequest,
  decodeMetaContextRequest,
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
  decodeServerReply,
  encodeInfoReply,
  encodeMetaContextReply,
  encodeOptionReply,
  encodeServerReply,
  type InfoReply,
  OPTION_REPLY_HEADER_SIZE,
} from "../../nbd/option_reply.ts";
import { decodeRequestHeader, encodeRequest, REQUEST_HEADER_SIZE } from "../../nbd/request.ts";
import {
  CHUNK_HEADER_SIZE,
  decodeChunkHeader,
  decodeChunkPayload,
  decodeSimpleReply,
  encodeBlockStatus,
  encodeChunk,
  encodeErrorChunk,
  encodeOffsetData,
  encodeOffsetHole,
  encodeSimpleReply,
  replyHeaderSize,
  SIMPLE_REPLY_SIZE,
} from "../../nbd/reply.ts";
import {
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAX_OPTION_LENGTH,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
} from "../../nbd/protocol.ts";
import { NbdProtocolError } from "../../nbd/error.ts";

const SEEDS = seeds();
const numRuns = 200;
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const offset = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const name = fc.string({ maxLength: 64, unit: "grapheme" });

function check(prop: fc.IProperty<unknown>): void {
  for (const seed of SEEDS) fc.assert(prop, { seed, numRuns });
}

/** Wraps `bytes` in a larger buffer at an odd offset, so codecs must respect byteOffset. */
function shifted(bytes: Uint8Array): Uint8Array {
  const host = new Uint8Array(bytes.length + 7);
  host.set(bytes, 3);
  return host.subarray(3, 3 + bytes.length);
}

Deno.test("handshake codecs round-trip greeting, client flags and export-name reply", () => {
  check(fc.property(u16, u32, offset, u16, fc.boolean(), (hs, cf, size, tf, noZeroes) => {
    assert.equal(decodeGreeting(shifted(encodeGreeting(hs))), hs);
    assert.equal(decodeClientFlags(shifted(encodeClientFlags(cf))), cf);
    const reply = encodeExportNameReply({ size, flags: tf }, noZeroes);
    assert.equal(reply.length, noZeroes ? 10 : 134);
    assert.deepEqual(
      decodeExportNameReply(shifted(reply.subarray(0, EXPORT_NAME_REPLY_SIZE))),
      { size, flags: tf },
    );
  }));
});

Deno.test("decodeGreeting() rejects a non-NBD peer and an oldstyle server", () => {
  const g = encodeGreeting(3);
  g[0] = 0;
  assert.throws(
    () => decodeGreeting(g),
    (e) => e instanceof NbdProtocolError && e.code === "NBD_BAD_MAGIC",
  );
  const old = encodeGreeting(3);
  new DataView(old.buffer).setBigUint64(8, 0x00420281861253n);
  assert.throws(() => decodeGreeting(old), { code: "NBD_OLDSTYLE" });
  assert.throws(() => decodeGreeting(new Uint8Array(5)), { code: "NBD_BAD_LENGTH" });
});

Deno.test("option codecs round-trip headers, GO/INFO, meta-context and export-name data", () => {
  check(
    fc.property(
      u32,
      name,
      fc.array(u16, { maxLength: 8 }),
      fc.array(name, { maxLength: 8 }),
      (option, exportName, infoRequests, queries) => {
        const data = encodeExportRequest({ name: exportName, infoRequests });
        const bytes = encodeOption(option, data);
        assert.deepEqual(decodeOptionHeader(shifted(bytes.subarray(0, OPTION_HEADER_SIZE))), {
          option,
          length: data.length,
        });
        assert.deepEqual(decodeExportRequest(shifted(bytes.subarray(OPTION_HEADER_SIZE))), {
          name: exportName,
          infoRequests,
        });
        const meta = encodeMetaContextRequest({ name: exportName, queries });
        assert.deepEqual(decodeMetaContextRequest(shifted(meta)), { name: exportName, queries });
        assert.equal(decodeExportName(encodeExportName(exportName)), exportName);
      },
    ),
  );
});

Deno.test("option decoders reject lies about lengths and oversize data", () => {
  const data = encodeExportRequest({ name: "abc", infoRequests: [3] });
  assert.throws(() => decodeExportRequest(data.subarray(0, data.length - 1)), NbdProtocolError);
  new DataView(data.buffer).setUint32(0, 1000);
  assert.throws(() => decodeExportRequest(data), { code: "NBD_BAD_LENGTH" });
  const meta = encodeMetaContextRequest({ name: "e", queries: ["base:allocation"] });
  new DataView(meta.buffer).setUint32(5, 0x7fffffff); // query count
  assert.throws(() => decodeMetaContextRequest(meta), { code: "NBD_BAD_LENGTH" });
  const header = encodeOption(7).subarray(0, OPTION_HEADER_SIZE);
  new DataView(header.buffer).setUint32(12, NBD_MAX_OPTION_LENGTH + 1);
  assert.throws(() => decodeOptionHeader(header), { code: "NBD_OPTION_TOO_LONG" });
  assert.throws(() => decodeExportName(new Uint8Array([0xff, 0xfe])), { code: "NBD_BAD_STRING" });
});

Deno.test("option reply codecs round-trip headers, SERVER, INFO and META_CONTEXT", () => {
  check(
    fc.property(u32, u32, name, name, offset, u16, u32, (option, type, n, d, size, flags, id) => {
      const server = encodeServerReply({ name: n, description: d });
      const bytes = encodeOptionReply(option, type, server);
      assert.deepEqual(
        decodeOptionReplyHeader(shifted(bytes.subarray(0, OPTION_REPLY_HEADER_SIZE))),
        { option, type, length: server.length },
      );
      assert.deepEqual(decodeServerReply(shifted(bytes.subarray(OPTION_REPLY_HEADER_SIZE))), {
        name: n,
        description: d,
      });
      const infos: InfoReply[] = [
        { type: NBD_INFO_EXPORT, size, flags },
        { type: NBD_INFO_NAME, name: n },
        { type: NBD_INFO_DESCRIPTION, description: d },
        { type: NBD_INFO_BLOCK_SIZE, minimum: 512, preferred: 4096, maximum: id },
        { type: 77, unknown: new Uint8Array([1, 2, 3]) },
      ];
      for (const info of infos) {
        assert.deepEqual(decodeInfoReply(shifted(encodeInfoReply(info))), info);
      }
      assert.deepEqual(decodeMetaContextReply(shifted(encodeMetaContextReply({ id, name: n }))), {
        id,
        name: n,
      });
    }),
  );
});

Deno.test("decodeInfoReply() checks the fixed sizes of known information types", () => {
  assert.throws(() => decodeInfoReply(new Uint8Array([0, 0, 1])), { code: "NBD_BAD_LENGTH" });
  assert.throws(() => decodeInfoReply(new Uint8Array([0, 3, 0, 0])), { code: "NBD_BAD_LENGTH" });
  const big = new Uint8Array(12);
  new DataView(big.buffer).setUint32(2, 0xffffffff); // size ≥ 2^63
  assert.throws(() => decodeInfoReply(big), { code: "NBD_SIZE_TOO_LARGE" });
});

Deno.test("request codec round-trips every header field, cookies bit for bit", () => {
  check(fc.property(u16, u16, u64, offset, u32, (flags, type, cookie, off, length) => {
    const header = { flags, type, cookie, offset: off, length };
    assert.deepEqual(decodeRequestHeader(shifted(encodeRequest(header))), header);
  }));
  const data = new Uint8Array([9, 8, 7]);
  const bytes = encodeRequest({ flags: 0, type: 1, cookie: 5n, offset: 0, length: 3 }, data);
  assert.equal(bytes.length, REQUEST_HEADER_SIZE + 3);
  assert.deepEqual(bytes.subarray(REQUEST_HEADER_SIZE), data);
  bytes[0] = 0x12;
  assert.throws(() => decodeRequestHeader(bytes), { code: "NBD_BAD_MAGIC" });
});

Deno.test("reply codecs round-trip simple replies, chunk headers and every chunk payload", () => {
  check(
    fc.property(
      u32,
      u64,
      u16,
      fc.uint8Array({ minLength: 1, maxLength: 64 }),
      offset,
      fc.integer({ min: 1, max: 0xffffffff }),
      fc.array(fc.record({ length: fc.integer({ min: 1, max: 0xffffffff }), flags: u32 }), {
        minLength: 1,
        maxLength: 16,
      }),
      fc.string({ maxLength: 40 }),
      (error, cookie, flags, data, off, holeLength, records, message) => {
        const extents = records.map((e) => ({ ...e }));
        const simple = encodeSimpleReply({ error, cookie });
        assert.equal(replyHeaderSize(simple.subarray(0, 4)), SIMPLE_REPLY_SIZE);
        assert.deepEqual(decodeSimpleReply(shifted(simple)), { error, cookie });
        const payload = encodeOffsetData(off, data);
        const chunk = encodeChunk({ flags, type: NBD_REPLY_TYPE_OFFSET_DATA, cookie }, payload);
        assert.equal(replyHeaderSize(chunk.subarray(0, 4)), CHUNK_HEADER_SIZE);
        assert.deepEqual(decodeChunkHeader(shifted(chunk.subarray(0, CHUNK_HEADER_SIZE))), {
          flags,
          type: NBD_REPLY_TYPE_OFFSET_DATA,
          cookie,
          length: payload.length,
        });
        assert.deepEqual(decodeChunkPayload(NBD_REPLY_TYPE_OFFSET_DATA, shifted(payload)), {
          type: NBD_REPLY_TYPE_OFFSET_DATA,
          offset: off,
          data,
        });
        assert.deepEqual(
          decodeChunkPayload(NBD_REPLY_TYPE_OFFSET_HOLE, encodeOffsetHole(off, holeLength)),
          { type: NBD_REPLY_TYPE_OFFSET_HOLE, offset: off, length: holeLength },
        );
        assert.deepEqual(
          decodeChunkPayload(NBD_REPLY_TYPE_BLOCK_STATUS, encodeBlockStatus(error, extents)),
          { type: NBD_REPLY_TYPE_BLOCK_STATUS, contextId: error, extents },
        );
        const errno = error || 5;
        assert.deepEqual(
          decodeChunkPayload(NBD_REPLY_TYPE_ERROR, encodeErrorChunk(errno, message)),
          { type: NBD_REPLY_TYPE_ERROR, error: errno, message },
        );
        assert.deepEqual(
          decodeChunkPayload(NBD_REPLY_TYPE_ERROR_OFFSET, encodeErrorChunk(errno, message, off)),
          { type: NBD_REPLY_TYPE_ERROR_OFFSET, error: errno, message, offset: off },
        );
        assert.deepEqual(decodeChunkPayload(NBD_REPLY_TYPE_NONE, new Uint8Array(0)), {
          type: NBD_REPLY_TYPE_NONE,
        });
      },
    ),
  );
});

Deno.test("chunk payload decoder rejects what the spec forbids", () => {
  assert.throws(() => replyHeaderSize(new Uint8Array(4)), { code: "NBD_BAD_MAGIC" });
  assert.throws(() => decodeChunkPayload(NBD_REPLY_TYPE_NONE, new Uint8Array(1)), NbdProtocolError);
  assert.throws(() => decodeChunkPayload(NBD_REPLY_TYPE_OFFSET_DATA, new Uint8Array(8)), {
    code: "NBD_BAD_LENGTH",
  });
  assert.throws(
    () => decodeChunkPayload(NBD_REPLY_TYPE_OFFSET_HOLE, encodeOffsetHole(0, 0)),
    { code: "NBD_BAD_CHUNK" },
  );
  assert.throws(
    () => decodeChunkPayload(NBD_REPLY_TYPE_BLOCK_STATUS, new Uint8Array(4 + 8 + 3)),
    { code: "NBD_BAD_CHUNK" },
  );
  assert.throws(
    () =>
      decodeChunkPayload(
        NBD_REPLY_TYPE_BLOCK_STATUS,
        encodeBlockStatus(0, [{ length: 0, flags: 0 }]),
      ),
    { code: "NBD_BAD_CHUNK" },
  );
  assert.throws(() => decodeChunkPayload(NBD_REPLY_TYPE_ERROR, encodeErrorChunk(0, "x")), {
    code: "NBD_BAD_CHUNK",
  });
  const lying = encodeErrorChunk(5, "abc");
  new DataView(lying.buffer).setUint16(4, 100);
  assert.throws(() => decodeChunkPayload(NBD_REPLY_TYPE_ERROR, lying), { code: "NBD_BAD_LENGTH" });
});

Deno.test("every decoder turns arbitrary bytes into a value or an NbdProtocolError, never a crash", () => {
  const decoders: ((b: Uint8Array) => unknown)[] = [
    decodeGreeting,
    decodeClientFlags,
    decodeExportNameReply,
    decodeOptionHeader,
    decodeExportRequest,
    decodeMetaContextRequest,
    decodeExportName,
    decodeOptionReplyHeader,
    decodeServerReply,
    decodeInfoReply,
    decodeMetaContextReply,
    decodeRequestHeader,
    decodeSimpleReply,
    decodeChunkHeader,
    (b) => replyHeaderSize(b),
    ...[0, 1, 2, 5, 0x8001, 0x8002, 0x8003, 9].map((t) => (b: Uint8Array) =>
      decodeChunkPayload(t, b)
    ),
  ];
  check(fc.property(fc.uint8Array({ maxLength: 48 }), (bytes) => {
    for (const decode of decoders) {
      try {
        decode(bytes);
      } catch (e) {
        assert.ok(e instanceof NbdProtocolError, `${decode.name}: ${e}`);
      }
    }
  }));
});
