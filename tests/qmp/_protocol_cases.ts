/**
 * Scripted QMP inputs for the conformance tests: every bad-input class of
 * the reference (§1.3–1.6) plus lexer, parser, ordering and number corner
 * cases. Each case is one or more raw writes and must leave the parser
 * between messages (unterminated ones end with `\x01`).
 *
 * @module
 */

/** One scripted step: a name and the writes to make. */
export interface ProtocolCase {
  name: string;
  writes: (string | Uint8Array)[];
}

const c = (name: string, ...writes: (string | Uint8Array)[]): ProtocolCase => ({ name, writes });
const bytes = (...parts: (string | number[])[]): Uint8Array => {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === "string") out.push(...new TextEncoder().encode(p));
    else out.push(...p);
  }
  return Uint8Array.from(out);
};
const qv = (id: string) => `{"execute": "query-version", "id": ${id}}`;

/** Before negotiation; ends by negotiating with `oob`. */
export const NEGOTIATION_CASES: ProtocolCase[] = [
  c("command before negotiation", qv("1")),
  c("query-block-jobs before negotiation", '{"execute": "query-block-jobs"}'),
  c("unknown command before negotiation", '{"execute": "nope", "id": "n"}'),
  c("malformed before negotiation", '{ "execute": }'),
  c("non-object before negotiation", "[1]"),
  c("exec-oob before negotiation", '{"exec-oob": "query-version", "id": "o1"}'),
  c("bad member before negotiation", '{"execute": "qmp_capabilities", "foo": 1, "id": "m"}'),
  c("enable foo", '{"execute": "qmp_capabilities", "arguments": {"enable": ["foo"]}, "id": "a"}'),
  c("enable [1]", '{"execute":"qmp_capabilities","arguments":{"enable":[1]}}'),
  c("enable string", '{"execute":"qmp_capabilities","arguments":{"enable":"oob"}}'),
  c("enable null", '{"execute":"qmp_capabilities","arguments":{"enable":null}}'),
  c("unknown argument of qmp_capabilities", '{"execute":"qmp_capabilities","arguments":{"x":1}}'),
  c("enable oob", '{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": "b"}'),
];

const deep = (n: number) => "[".repeat(n) + "]".repeat(n);

/** After negotiation with `oob` enabled. */
export const NEGOTIATED_CASES: ProtocolCase[] = [
  c("qmp_capabilities again", '{"execute": "qmp_capabilities", "id": "c"}'),
  c(
    "qmp_capabilities again with bad enable",
    '{"execute": "qmp_capabilities", "arguments": {"enable": ["x"]}}',
  ),
  c("id object", qv('{"x": [1, 2]}')),
  c("id null", qv("null")),
  c(
    "id numbers",
    qv(
      "[1.0, 0.1, 1e400, -1e400, -0, -0.0, 1E2, -5e-324, 123456789012345678901234, -9223372036854775809, 9223372036854775807, 18446744073709551615, 1e16, 1e17, 0.0001, 0.00001, 2.5e-7]",
    ),
  ),
  c(
    "id strings",
    qv(
      '["\\u00e9\\u0000\\ud83d\\ude00/\\u007f\\u001f", "\\"\\\\\\/\\b\\f\\n\\r\\t", "é😀", "\\u00C0"]',
    ),
  ),
  c(
    "id member order",
    qv(
      '{"z": 1, "y": {"b": 2, "a": [{"d": 1, "c": 2}]}, "x": null, "__proto__": 3, "a\\u0000b": 4}',
    ),
  ),
  c("malformed", '{ "execute": }'),
  c("malformed with id", '{ "execute": , "id": 5}'),
  c("array", "[1,2]"),
  c("number", "42"),
  c("string", '"hello"'),
  c("true", "true"),
  c("null", "null"),
  c("missing execute", '{"id": 7}'),
  c("empty object", "{}"),
  c("execute not a string", '{"execute": 1, "id": 8}'),
  c("execute null", '{"execute": null}'),
  c("unknown member", '{"execute": "query-version", "foo": 1, "id": 9}'),
  c("two unknown members", '{"foo": 1, "bar": 2, "execute": "query-version", "id": 9}'),
  c("bad members in hash order", '{"arguments": 1, "execute": 2, "zzz": 3, "id": 9}'),
  c("bad members in hash order 2", '{"zzz": 3, "execute": 2, "arguments": [], "id": 9}'),
  c("arguments array", '{"execute": "query-version", "arguments": [], "id": 10}'),
  c("arguments null", '{"execute":"query-version","arguments":null,"id":30}'),
  c("unknown command", '{"execute": "no-such-command", "id": 11}'),
  c("unknown command with odd name", '{"execute": "a\\u0000\\u00e9\\n", "id": 11}'),
  c("execute and exec-oob", '{"execute": "query-version", "exec-oob": "query-version", "id": 12}'),
  c("exec-oob and execute", '{"exec-oob": "query-version", "execute": "query-version", "id": 12}'),
  c("exec-oob non-oob command", '{"exec-oob": "query-version", "id": 13}'),
  c("exec-oob unknown command", '{"exec-oob": "nope", "id": 13}'),
  c("exec-oob not a string", '{"exec-oob": 5, "id": 13}'),
  c("unknown argument", '{"execute": "query-version", "arguments": {"foo": 1}, "id": 14}'),
  c(
    "unknown argument block-stream",
    '{"execute": "block-stream", "arguments": {"device": "ov", "foo": 1}, "id": 15}',
  ),
  c("missing device", '{"execute": "block-stream", "arguments": {}, "id": 16}'),
  c(
    "speed string",
    '{"execute": "block-stream", "arguments": {"device": "ov", "speed": "fast"}, "id": 17}',
  ),
  c("device int", '{"execute": "block-stream", "arguments": {"device": 123}, "id": 18}'),
  c(
    "auto-finalize string",
    '{"execute": "block-stream", "arguments": {"device": "ov", "auto-finalize": "yes"}, "id": 19}',
  ),
  c(
    "bad enum",
    '{"execute": "block-stream", "arguments": {"device": "ov", "on-error": "xyz"}, "id": 20}',
  ),
  c(
    "enum not a string",
    '{"execute": "block-stream", "arguments": {"device": "ov", "on-error": 1}, "id": 20}',
  ),
  c(
    "float speed",
    '{"execute": "block-stream", "arguments": {"device": "ov", "speed": 1.5}, "id": 22}',
  ),
  c(
    "1.0 speed",
    '{"execute": "block-stream", "arguments": {"device": "ov", "speed": 1.0}, "id": 22}',
  ),
  c(
    "huge speed",
    '{"execute": "block-stream", "arguments": {"device": "ov", "speed": 99999999999999999999999}, "id": 31}',
  ),
  c(
    "uint64 max speed",
    '{"execute": "block-job-set-speed", "arguments": {"device": "nojob", "speed": 18446744073709551615}, "id": 32}',
  ),
  c(
    "int64 max + 1",
    '{"execute": "block-job-set-speed", "arguments": {"device": "nojob", "speed": 9223372036854775808}, "id": 33}',
  ),
  c(
    "int64 min",
    '{"execute": "block-job-set-speed", "arguments": {"device": "nojob", "speed": -9223372036854775808}, "id": 33}',
  ),
  c(
    "device not found",
    '{"execute": "block-stream", "arguments": {"device": "nonexist"}, "id": 23}',
  ),
  c(
    "every argument",
    '{"execute": "block-stream", "arguments": {"job-id": "j", "device": "d", "base-node": "bn", "backing-file": "f", "speed": 0, "on-error": "stop", "filter-node-name": "cor", "auto-finalize": false, "auto-dismiss": false}, "id": 23}',
  ),
  c(
    "type error before unexpected",
    '{"execute": "block-stream", "arguments": {"zz": 1, "device": 5}, "id": 24}',
  ),
  c(
    "missing before unexpected",
    '{"execute": "block-stream", "arguments": {"zz": 1, "speed": 5}, "id": 24}',
  ),
  c(
    "first member in schema order wins",
    '{"execute": "block-stream", "arguments": {"device": "d", "auto-dismiss": 1, "speed": "x"}, "id": 24}',
  ),
  c(
    "several unexpected",
    '{"execute": "block-stream", "arguments": {"foo": 1, "bar": 2, "baz": 3, "device": "d"}, "id": 25}',
  ),
  c(
    "several unexpected 2",
    '{"execute": "block-stream", "arguments": {"bar": 1, "foo": 2, "device": "d"}, "id": 25}',
  ),
  c(
    "many unexpected",
    '{"execute": "block-stream", "arguments": {"a1": 1, "b2": 2, "c3": 3, "d4": 4, "e5": 5, "f6": 6, "g7": 7, "h8": 8, "i9": 9, "device": "d", "speed": 1, "base": "x", "job-id": "j"}, "id": 25}',
  ),
  c(
    "many unexpected 2",
    '{"execute": "query-version", "arguments": {"q": 1, "w": 2, "e": 3, "r": 4, "t": 5, "y": 6, "u": 7, "i": 8, "o": 9, "p": 10, "s": 11, "d": 12, "f": 13, "g": 14, "h": 15, "j": 16, "k": 17}, "id": 25}',
  ),
  c("flat null", '{"execute":"query-named-block-nodes","arguments":{"flat":null}}'),
  c("flat true", '{"execute":"query-named-block-nodes","arguments":{"flat":true}, "id": "f"}'),
  c(
    "force string",
    '{"execute":"block-job-cancel","arguments":{"device":"j","force":"x"}, "id": "f"}',
  ),
  c(
    "cancel no job",
    '{"execute": "block-job-cancel", "arguments": {"device": "nojob", "force": true}, "id": 26}',
  ),
  c("job-cancel no job", '{"execute": "job-cancel", "arguments": {"id": "nojob"}, "id": 27}'),
  c("job-cancel id int", '{"execute": "job-cancel", "arguments": {"id": 1}, "id": 27}'),
  c(
    "block-job-dismiss device",
    '{"execute": "block-job-dismiss", "arguments": {"device": "x"}, "id": 27}',
  ),
  c(
    "set-speed missing speed",
    '{"execute": "block-job-set-speed", "arguments": {"device": "nojob"}, "id": 28}',
  ),
  c("query-block-jobs", '{"execute": "query-block-jobs", "id": 24}'),
  c("query-jobs", '{"execute": "query-jobs", "id": 25}'),
  c("single quotes", "{'execute': 'query-version', 'id': 'sq'}"),
  c("single-quoted escapes", "{'execute': 'query-version', 'id': '\\'\"\\\"'}"),
  c(
    "two commands in one write",
    '{"execute":"query-block-jobs","id":"m1"}{"execute":"query-block-jobs","id":"m2"}',
  ),
  c("split command", '{"execute":"query-', 'block-jobs","id":"split"}'),
  c("split everywhere", '{"exe', 'cute"', ":", ' "query-version"', ', "id": 1', "23", "4}"),
  c("trailing junk", '{"execute":"query-block-jobs","id":"tj"} }'),
  c("duplicate key", '{"execute":"query-block-jobs","id":1,"id":2}'),
  c("duplicate key after error", '{"execute":"query-block-jobs","id":1,"id":}'),
  c("stray control in string", '{"execute": "query-\x01'),
  c("resync with control", '{"execute": "query-version", ', "\x01"),
  c("0xff", bytes([0xff])),
  c("0xfe in object", bytes('{"execute": ', [0xfe], "}")),
  c("invalid utf8 in string", bytes('{"execute": "query-version", "id": "', [0xc3, 0x28], '"}')),
  c("overlong nul in string", bytes('{"execute": "query-version", "id": "a', [0xc0, 0x80], 'b"}')),
  c("overlong slash in string", bytes('{"execute": "query-version", "id": "', [0xc0, 0xaf], '"}')),
  c(
    "raw surrogate in string",
    bytes('{"execute": "query-version", "id": "', [0xed, 0xa0, 0x80], '"}'),
  ),
  c(
    "raw beyond unicode",
    bytes('{"execute": "query-version", "id": "', [0xf4, 0x90, 0x80, 0x80], '"}'),
  ),
  c("raw noncharacter", bytes('{"execute": "query-version", "id": "', [0xef, 0xbf, 0xbe], '"}')),
  c(
    "raw 4-byte char",
    bytes('{"execute": "query-version", "id": "', [0xf0, 0x9f, 0x98, 0x80], '"}'),
  ),
  c("utf8 outside string", bytes([0xc3, 0xa9], " 1")),
  c("stray with utf8", bytes('"caf', [0xc3, 0xa9], "\x02")),
  c("raw tab in string", '{"execute": "query-version", "id": "a\tb"}'),
  c("raw del in string", '{"execute": "query-version", "id": "a\x7fb"}'),
  c("bad escape", '{"execute": "query-version", "id": "\\x"}'),
  c("short unicode escape", '{"execute": "query-version", "id": "\\u12"}'),
  c("lone high surrogate", '{"execute": "query-version", "id": "\\uD800"}'),
  c("high surrogate then letter", '{"execute": "query-version", "id": "\\uD800\\u0041"}'),
  c("lone low surrogate", '{"execute": "query-version", "id": "\\uDC00"}'),
  c("noncharacter escape", '{"execute": "query-version", "id": "\\uFFFE"}'),
  c("nonhex escape", '{"execute": "query-version", "id": "\\u00g0"}'),
  c("escaped nul", '{"execute": "query-version", "id": "\\u0000"}'),
  c("bare word", "foo"),
  c("long bare word", "x".repeat(1100) + " "),
  c("truex", "truex "),
  c("true1", "true1 "),
  c("leading zero", "01 "),
  c("minus alone", "- "),
  c("dot", "1. "),
  c("exponent alone", "1e "),
  c("exponent sign alone", "1e+ "),
  c("hex", "0x1 "),
  c("0e5", "0e5 "),
  c("percent", "%"),
  c("nul byte", bytes([0])),
  c("missing colon", '{"a" 1}'),
  c("non-string key", "{1: 2}"),
  c("array key", "{[1]: 2}"),
  c("missing comma in dict", '{"a": 1 "b": 2}'),
  c("missing comma in list", "[1 2]"),
  c("missing value in dict", '{"a": }'),
  c("trailing comma in dict", '{"a": 1,}'),
  c("trailing comma in list", "[1,]"),
  c("leading comma in list", "[,1]"),
  c("empty pair", "{,}"),
  c("close bracket", "]"),
  c("close brace", "}"),
  c("colon", ":"),
  c("comma", ","),
  c("mismatched", '{"a": [1}]'),
  c("mismatched 2", '[{"a": 1]}'),
  c("trailing comma in id", '{"execute":"query-version","id":[1,]}'),
  c("depth 1024", '{"execute":"query-version","id":' + deep(1023) + "}"),
  c("depth 1025", '{"execute":"query-version","id":' + deep(1024) + "}"),
  c("bare depth 1024", deep(1024)),
  c("bare depth 1025", deep(1025)),
  c("after all that", '{"execute": "query-block-jobs", "id": "final"}'),
];

/** After negotiation without `oob`. */
export const NO_OOB_CASES: ProtocolCase[] = [
  c("negotiate without oob", '{"execute": "qmp_capabilities", "id": 0}'),
  c("exec-oob without oob", '{"exec-oob": "query-version", "id": 1}'),
  c("execute and exec-oob without oob", '{"execute": "query-version", "exec-oob": "x", "id": 2}'),
  c("exec-oob not a string without oob", '{"exec-oob": 1, "execute": "query-version", "id": 3}'),
  c("works", '{"execute": "query-block-jobs", "id": 4}'),
];
