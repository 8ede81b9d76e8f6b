import assert from "node:assert/strict";
import { checkBlockdevOptions } from "../../daemon/blockdev_schema.ts";
import { OptionError, parseKeyval } from "../../daemon/keyval.ts";

function check(text: string) {
  return checkBlockdevOptions(parseKeyval(text, "driver"), true);
}

function refused(text: string, message: string) {
  assert.throws(() => check(text), (e: unknown) => {
    assert.ok(e instanceof OptionError, String(e));
    assert.equal(e.message, message);
    return true;
  });
}

Deno.test("checkBlockdevOptions() converts keyval strings by the schema", () => {
  assert.deepEqual(
    check("driver=file,node-name=f0,filename=ov.qed,read-only=on,cache.direct=off,aio=native"),
    {
      driver: "file",
      "node-name": "f0",
      filename: "ov.qed",
      "read-only": true,
      cache: { direct: false },
      aio: "native",
    },
  );
  assert.deepEqual(check("driver=qed,node-name=ov,file=f0,backing=base"), {
    driver: "qed",
    "node-name": "ov",
    file: "f0",
    backing: "base",
  });
  assert.deepEqual(
    check("raw,node-name=r,file.driver=file,file.filename=b.raw,size=0x100000").file,
    { driver: "file", filename: "b.raw" },
  );
  assert.deepEqual(
    check("nbd,node-name=n,server.type=unix,server.path=/s,export=t").server,
    { type: "unix", path: "/s" },
  );
});

Deno.test("checkBlockdevOptions() refuses bad options with qemu-storage-daemon's texts", () => {
  refused("node-name=f0,filename=ov.qed", "Parameter 'driver' is missing");
  refused("driver=nosuch,node-name=f0", "Parameter 'driver' does not accept value 'nosuch'");
  refused("driver=file,node-name=f0,filename=ov.qed,bogus=1", "Parameter 'bogus' is unexpected");
  refused(
    "driver=file,node-name=f0,filename=o,read-only=maybe",
    "Parameter 'read-only' expects 'on' or 'off'",
  );
  refused(
    "driver=file,node-name=f0,filename=o,cache.direct=maybe",
    "Parameter 'cache.direct' expects 'on' or 'off'",
  );
  refused(
    "driver=file,node-name=f0,filename=o,cache=x",
    "Invalid parameter type for 'cache', expected: object",
  );
  refused("driver=file,node-name=f0,filename=o,a.b=1", "Parameter 'a' is unexpected");
  refused("driver=raw,node-name=r,file=f,size=abc", "Parameter 'size' expects integer");
  refused("driver=file,node-name=1bad,filename=o", "Invalid node-name: '1bad'");
  refused("nbd,node-name=n,server.type=unix", "Parameter 'server.path' is missing");
});

Deno.test("checkBlockdevOptions() names qemu drivers that qedstream lacks", () => {
  assert.throws(() => check("driver=qcow2,node-name=q,file=f"), /not supported by qedstream/);
});

Deno.test("checkBlockdevOptions() checks JSON types as qemu's QMP does", () => {
  assert.throws(
    () => checkBlockdevOptions({ driver: "raw", "node-name": "r", file: "f", size: "1" }, false),
    /Invalid parameter type for 'size', expected: integer/,
  );
});

Deno.test("checkBlockdevOptions() reads a quorum's children from keyval lists and JSON arrays", () => {
  const children =
    "children.0.driver=qed,children.0.file.driver=file,children.0.file.filename=a.qed,children.1=n1";
  assert.deepEqual(check(`driver=quorum,node-name=q,vote-threshold=2,${children}`), {
    driver: "quorum",
    "node-name": "q",
    children: [{ driver: "qed", file: { driver: "file", filename: "a.qed" } }, "n1"],
    "vote-threshold": 2,
  });
  assert.deepEqual(
    checkBlockdevOptions({
      driver: "quorum",
      "node-name": "q",
      "vote-threshold": 1,
      "read-pattern": "fifo",
      children: ["n0", { driver: "raw", file: "f" }],
    }, false).children,
    ["n0", { driver: "raw", file: "f" }],
  );
});

Deno.test("checkBlockdevOptions() refuses bad quorum options with qemu-storage-daemon's texts", () => {
  const c = "children.0.driver=raw,children.0.file=f";
  refused("driver=quorum,node-name=q,vote-threshold=2", "Parameter 'children' is missing");
  refused(`driver=quorum,node-name=q,${c}`, "Parameter 'vote-threshold' is missing");
  refused(
    `driver=quorum,node-name=q,vote-threshold=x,${c}`,
    "Parameter 'vote-threshold' expects integer",
  );
  refused(
    `driver=quorum,node-name=q,vote-threshold=1,read-pattern=foo,${c}`,
    "Parameter 'read-pattern' does not accept value 'foo'",
  );
  refused(
    `driver=quorum,node-name=q,vote-threshold=1,blkverify=x,${c}`,
    "Parameter 'blkverify' expects 'on' or 'off'",
  );
  refused(
    "driver=quorum,node-name=q,vote-threshold=1,children=x",
    "Invalid parameter type for 'children', expected: array",
  );
  refused(
    "driver=quorum,node-name=q,vote-threshold=1,children.x=x",
    "Invalid parameter type for 'children', expected: array",
  );
  refused(
    "driver=quorum,node-name=q,vote-threshold=1,children.0.driver=raw",
    "Parameter 'children.0.file' is missing",
  );
  const json = (children: unknown[]) => () =>
    checkBlockdevOptions(
      { driver: "quorum", "node-name": "q", "vote-threshold": 1, children },
      false,
    );
  assert.throws(
    json([3]),
    /^OptionError: Invalid parameter type for 'null', expected: BlockdevRef$/,
  );
  assert.throws(
    json([{ driver: "raw" }]),
    /^OptionError: Parameter 'children\[0\]\.file' is missing$/,
  );
  assert.throws(
    json(["a", { driver: "raw", file: "f", x: 1 }]),
    /^OptionError: Parameter 'children\[1\]\.x' is unexpected$/,
  );
  assert.throws(
    json([{ driver: "raw", file: 3 }]),
    /^OptionError: Invalid parameter type for 'file', expected: BlockdevRef$/,
  );
});

Deno.test("checkBlockdevOptions() names enum and alternate members bare, as qemu's generated visitors", () => {
  refused(
    "driver=raw,node-name=r,file.driver=bogus",
    "Parameter 'driver' does not accept value 'bogus'",
  );
  refused(
    "driver=raw,node-name=r,file.driver=file,file.filename=x,file.locking=bogus",
    "Parameter 'locking' does not accept value 'bogus'",
  );
  refused(
    "driver=raw,node-name=r,file.driver=raw,file.file.0=x",
    "Invalid parameter type for 'file', expected: BlockdevRef",
  );
  refused(
    "driver=qed,node-name=f,backing.0=a,file=x",
    "Invalid parameter type for 'backing', expected: BlockdevRefOrNull",
  );
});
