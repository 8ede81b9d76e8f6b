import assert from "node:assert/strict";
import { OptionError, parseKeyval, parseOptionArgument } from "../../daemon/keyval.ts";

function rejects(text: string, message: string, implied?: string) {
  assert.throws(() => parseKeyval(text, implied), (e: unknown) => {
    assert.ok(e instanceof OptionError);
    assert.equal(e.message, message);
    return true;
  });
}

Deno.test("parseKeyval() nests dotted keys and unescapes ',,'", () => {
  assert.deepEqual(
    parseKeyval("driver=raw,file.driver=file,file.filename=a,,b.raw,cache.direct=on"),
    { driver: "raw", file: { driver: "file", filename: "a,b.raw" }, cache: { direct: "on" } },
  );
});

Deno.test("parseKeyval() takes an implied first key as qemu-storage-daemon does", () => {
  assert.deepEqual(parseKeyval("socket,id=m,path=/x", "backend"), {
    backend: "socket",
    id: "m",
    path: "/x",
  });
  assert.deepEqual(parseKeyval("driver", "driver"), { driver: "driver" });
  // qemu reads "driver=file,,node-name=x" as one value with a literal comma.
  assert.deepEqual(parseKeyval("driver=file,,node-name=x", "driver"), {
    driver: "file,node-name=x",
  });
});

Deno.test("parseKeyval() rejects bad keys with qemu's texts", () => {
  rejects("a=1,=1", "Invalid parameter ''");
  rejects("a..b=1", "Invalid parameter 'a..b'");
  rejects("filename=x,filename.x=1", "Parameters 'filename.*' used inconsistently");
  rejects("cache.direct=on,cache=x", "Parameters 'cache.*' used inconsistently");
  rejects("driver", "Expected '=' after parameter 'driver'");
});

Deno.test("parseKeyval() lets a repeated key take its last value", () => {
  assert.deepEqual(parseKeyval("node-name=a,node-name=b"), { "node-name": "b" });
});

Deno.test("parseOptionArgument() reads JSON objects too", () => {
  assert.deepEqual(parseOptionArgument('{"driver":"file","x":1}'), { driver: "file", x: 1 });
  assert.throws(() => parseOptionArgument("{nope"), OptionError);
});

Deno.test("parseKeyval() makes numbered keys a list in their order, as qemu's keyval", () => {
  assert.deepEqual(
    parseKeyval("driver=quorum,children.1=b,children.0.driver=qed,children.0.file=f,x.00=z"),
    { driver: "quorum", children: [{ driver: "qed", file: "f" }, "b"], x: ["z"] },
  );
  // Numbered keys below a list element are a list too; the root stays an object.
  assert.deepEqual(parseKeyval("a.0.b.0=1,a.0.b.1=2"), { a: [{ b: ["1", "2"] }] });
});

Deno.test("parseKeyval() refuses gaps and mixed keys in lists with qemu-storage-daemon's texts", () => {
  rejects("children.0=a,children.2=b", "Parameter 'children.1' missing");
  rejects("children.1=a,children.2=b", "Parameter 'children.0' missing");
  rejects("children.0=a,children.x=b", "Parameters 'children.*' used inconsistently");
  rejects("children.0=a,children.0.driver=b", "Parameters 'children.0.*' used inconsistently");
});
