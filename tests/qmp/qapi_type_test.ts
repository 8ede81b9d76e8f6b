import assert from "node:assert/strict";
import { JsonMessageParser, type JsonObject, q, QmpError, visitArguments } from "../../qmp/mod.ts";

function parseObject(text: string): JsonObject {
  let out: JsonObject | undefined;
  new JsonMessageParser((m) => (out = m.value as JsonObject)).feed(new TextEncoder().encode(text));
  return out!;
}

function errorOf(type: ReturnType<typeof q.struct>, json: string): string {
  try {
    visitArguments(type, parseObject(json));
  } catch (e) {
    assert.ok(e instanceof QmpError);
    assert.equal(e.class, "GenericError");
    return e.desc;
  }
  return "ok";
}

const nested = q.struct("t", {
  a: q.struct("inner", { b: q.int, "*c": q.array(q.struct("el", { d: q.str })) }),
  "*e": q.array(q.enumOf("E", ["x", "y"])),
  "*n": q.number,
  "*u8": q.uint8,
  "*i32": q.int32,
  "*u64": q.uint64,
  "*any": q.any,
  "*nul": q.null,
});

Deno.test("visitArguments() names nested members as qemu's full_name() does", () => {
  assert.equal(errorOf(nested, "{}"), "Parameter 'a' is missing");
  assert.equal(errorOf(nested, '{"a": 1}'), "Invalid parameter type for 'a', expected: object");
  assert.equal(errorOf(nested, '{"a": {}}'), "Parameter 'a.b' is missing");
  assert.equal(
    errorOf(nested, '{"a": {"b": "1"}}'),
    "Invalid parameter type for 'a.b', expected: integer",
  );
  assert.equal(errorOf(nested, '{"a": {"b": 1, "z": 0}}'), "Parameter 'a.z' is unexpected");
  assert.equal(
    errorOf(nested, '{"a": {"b": 1, "c": 5}}'),
    "Invalid parameter type for 'a.c', expected: array",
  );
  assert.equal(
    errorOf(nested, '{"a": {"b": 1, "c": [{"d": "x"}, {}]}}'),
    "Parameter 'a.c[1].d' is missing",
  );
  assert.equal(
    errorOf(nested, '{"a": {"b": 1, "c": [{"d": 5}]}}'),
    "Invalid parameter type for 'a.c[0].d', expected: string",
  );
  // Enum errors use the bare member name, "null" inside a list (a qemu 7.2 quirk).
  assert.equal(
    errorOf(nested, '{"a": {"b": 1}, "e": ["x", "q"]}'),
    "Parameter 'null' does not accept value 'q'",
  );
  assert.equal(
    errorOf(nested, '{"a": {"b": 1}, "e": [1]}'),
    "Invalid parameter type for 'e[0]', expected: string",
  );
});

Deno.test("visitArguments() checks numbers like qemu's visitor", () => {
  const base = '{"a": {"b": 1}, ';
  assert.equal(
    errorOf(nested, base + '"n": "x"}'),
    "Invalid parameter type for 'n', expected: number",
  );
  assert.equal(errorOf(nested, base + '"u8": 256}'), "Parameter 'u8' expects uint8_t");
  assert.equal(errorOf(nested, base + '"i32": 2147483648}'), "Parameter 'i32' expects int32_t");
  assert.equal(errorOf(nested, base + '"u64": 1.5}'), "Parameter 'u64' expects uint64");
  assert.equal(
    errorOf(nested, base + '"nul": 0}'),
    "Invalid parameter type for 'nul', expected: null",
  );
  const visited = visitArguments(
    nested,
    parseObject(base + '"n": 1e3, "u64": 18446744073709551615, "any": {"k": [1]}, "nul": null}'),
  );
  assert.deepEqual({ ...visited, any: { ...(visited.any as object) } }, {
    a: { b: 1 },
    n: 1000,
    u64: 18446744073709552000,
    any: { k: [1] },
    nul: null,
  });
  // A negative int64 is accepted for uint64 as its two's complement, as in qemu.
  assert.equal(visitArguments(nested, parseObject(base + '"u64": -1}')).u64, 2 ** 64);
});
