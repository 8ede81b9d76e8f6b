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
