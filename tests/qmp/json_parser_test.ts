import assert from "node:assert/strict";
import fc from "fast-check";
import { seeds } from "../_tools.ts";
import {
  type JsonMessage,
  JsonMessageParser,
  type JsonParserLimits,
  toQemuJson,
} from "../../qmp/mod.ts";

const enc = new TextEncoder();

/** Feeds the chunks and returns each message as qemu would print it (or its error text). */
function parse(chunks: (string | Uint8Array)[], limits?: JsonParserLimits): string[] {
  const out: string[] = [];
  const p = new JsonMessageParser((m: JsonMessage) => {
    out.push(m.error !== undefined ? `ERR ${m.error}` : toQemuJson(m.value));
  }, limits);
  for (const c of chunks) p.feed(typeof c === "string" ? enc.encode(c) : c);
  return out;
}

Deno.test("JsonMessageParser emits a value as soon as it is complete, without a newline", () => {
  assert.deepEqual(parse(['{"a": 1}']), ['{"a": 1}']);
  assert.deepEqual(parse(["[1, 2", "]"]), ["[1, 2]"]);
  // A number at top level ends only when the next byte shows it has ended.
  assert.deepEqual(parse(["12"]), []);
  assert.deepEqual(parse(["12", " "]), ["12"]);
});

Deno.test("JsonMessageParser reads several values from one write and one value from many", () => {
  assert.deepEqual(parse(['{"a":1}{"b":2}\n[3] "x"']), ['{"a": 1}', '{"b": 2}', "[3]", '"x"']);
  const text = `{"execute": "query-version", "id": {"x": [1, 2.5, "é", null, true]}}`;
  const bytes = enc.encode(text);
  const one = parse([bytes]);
  assert.equal(one.length, 1);
  for (let i = 0; i <= bytes.length; i++) {
    assert.deepEqual(parse([bytes.subarray(0, i), bytes.subarray(i)]), one, `split at ${i}`);
  }
  assert.deepEqual(parse([...bytes].map((b) => Uint8Array.of(b))), one, "byte by byte");
});

Deno.test("JsonMessageParser gives values split at random points the same result (property)", () => {
  for (const seed of seeds()) {
    fc.assert(
      fc.property(
        fc.jsonValue({ maxDepth: 4 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        (value, cuts) => {
          const bytes = enc.encode(JSON.stringify(value) + " ");
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) =>
            a - b
          );
          const chunks: Uint8Array[] = [];
          let last = 0;
          for (const p of points) {
            chunks.push(bytes.subarray(last, p));
            last = p;
          }
          chunks.push(bytes.subarray(last));
          assert.deepEqual(parse(chunks), parse([bytes]));
          assert.equal(parse([bytes]).length, 1);
        },
      ),
      { seed, numRuns: 300 },
    );
  }
});

Deno.test("JsonMessageParser reports qemu's parse errors", () => {
  const cases: [string | Uint8Array, string[]][] = [
    ['{ "execute": }', ["ERR JSON parse error, expecting value"]],
    ["foo ", ["ERR JSON parse error, invalid keyword 'foo'"]],
    ['{"a":1,"a":2}', ["ERR JSON parse error, duplicate key"]],
    ['{"a" 1}', ["ERR JSON parse error, missing : in object pair"]],
    ["{1: 2}", ["ERR JSON parse error, key is not a string in object"]],
    ['{"a": 1 "b": 2}', ["ERR JSON parse error, expected separator in dict"]],
    ["[1 2]", ["ERR JSON parse error, expected separator in list"]],
    ['"\\x"', ["ERR JSON parse error, invalid escape sequence in string"]],
    ['"\\uD800"', ["ERR JSON parse error, \\uD800 is not a valid Unicode character"]],
    [Uint8Array.of(0x22, 0xc3, 0x28, 0x22), [
      "ERR JSON parse error, invalid UTF-8 sequence in string",
    ]],
    ['{"execute": "query-\x01', [`ERR JSON parse error, stray '"query-\x01'`]],
    [Uint8Array.of(0xff), ["ERR JSON parse error, stray '\ufffd'"]],
    ['{"a": 1} }', ['{"a": 1}', "ERR JSON parse error, expecting value"]],
    ["'single' ", ['"single"']],
    ["'it\\'s' ", ['"it\'s"']],
    ['"\\u0000"', ['"\\u0000"']],
  ];
  for (const [input, expected] of cases) assert.deepEqual(parse([input]), expected, String(input));
});

Deno.test("JsonMessageParser resynchronises after a lexical error", () => {
  assert.deepEqual(parse(['{"execute": "query-version", ', "\x01", '{"b": 2}']), [
    "ERR JSON parse error, stray '\x01'",
    '{"b": 2}',
  ]);
  // Skipped input ends at a structural character.
  assert.deepEqual(parse(["01 junk junk [1]"]).slice(-1), ["[1]"]);
});

Deno.test("JsonMessageParser enforces the nesting limit at depth 1025, then resynchronises", () => {
  const ok = parse(["[".repeat(1024) + "]".repeat(1024)]);
  assert.equal(ok.length, 1);
  const bad = parse(["[".repeat(1025) + "]".repeat(1025) + '{"after": 1}']);
  assert.equal(bad[0], "ERR JSON nesting depth limit exceeded");
  assert.equal(bad.filter((l) => l === "ERR JSON parse error, expecting value").length, 1025);
  assert.equal(bad.at(-1), '{"after": 1}');
});

Deno.test("JsonMessageParser enforces the token count and size limits", () => {
  const limits = { maxTokenCount: 10, maxTokenSize: 100 };
  assert.equal(parse(["[1,2,3,4]"], limits).length, 1); // 9 tokens
  assert.deepEqual(parse(["[1,2,3,4,5]"], limits).slice(0, 1), [
    "ERR JSON token count limit exceeded",
  ]);
  assert.deepEqual(parse(['["' + "a".repeat(97) + '"]'], limits).slice(0, 1), [
    "ERR JSON token size limit exceeded",
  ]);
  assert.deepEqual(parse(['"' + "a".repeat(96) + '"'], limits), ['"' + "a".repeat(96) + '"']);
  // One token longer than the limit is cut off where it passes it.
  // The rest of it is lexed afresh (as qemu does); a control byte resynchronises.
  const long = parse(['"' + "a".repeat(300) + '"\x01[7]'], limits);
  assert.equal(long[0], "ERR JSON token size limit exceeded");
  assert.equal(long.at(-1), "[7]");
});

Deno.test("JsonMessageParser rejects a 64 MiB string with qemu's default limit, then works", () => {
  const big = new Uint8Array((64 << 20) + 8).fill(0x61);
  big[0] = 0x22;
  const out = parse([big, '"\x01{"ok": 1}']);
  assert.equal(out[0], "ERR JSON token size limit exceeded");
  assert.equal(out.at(-1), '{"ok": 1}');
});

Deno.test("JsonMessageParser keeps memory bounded on endless input", () => {
  // 256 MiB of one unterminated string against a 1 MiB limit: errors, no growth.
  const p = new JsonMessageParser(() => {}, { maxTokenSize: 1 << 20 });
  const chunk = new Uint8Array(1 << 20).fill(0x61);
  p.feed(enc.encode('"'));
  let most = 0;
  for (let i = 0; i < 256; i++) {
    p.feed(chunk);
    most = Math.max(most, p.heldBytes);
  }
  // The buffer never outgrows twice the token limit (process RSS is shared with parallel tests).
  assert.ok(most <= 2 << 20, `held ${most} bytes`);
});

Deno.test("JsonMessageParser.pause() stops feeding after the message's last byte", () => {
  const seen: string[] = [];
  const p = new JsonMessageParser((m) => {
    seen.push(toQemuJson(m.value));
    p.pause();
  });
  const bytes = enc.encode("[1][2][3]");
  let pos = 0;
  const stops: number[] = [];
  while (pos < bytes.length) stops.push(pos = p.feed(bytes, pos));
  assert.deepEqual(stops, [3, 6, 9]);
  assert.deepEqual(seen, ["[1]", "[2]", "[3]"]);
});
