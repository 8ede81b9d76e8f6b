import assert from "node:assert/strict";
import fc from "fast-check";
import { seeds } from "../_tools.ts";
import {
  formatNbdBlockdevOptions,
  formatNbdUri,
  isNbdUri,
  type NbdTarget,
  parseNbdBlockdevOptions,
  parseNbdUri,
  parseSocketAddress,
} from "../../nbd/uri.ts";
import { NbdUriError } from "../../nbd/error.ts";

Deno.test("parseNbdUri() reads qemu's TCP and Unix forms", () => {
  assert.deepEqual(parseNbdUri("nbd://localhost:10810/tpl"), {
    address: { type: "inet", host: "localhost", port: 10810 },
    exportName: "tpl",
  });
  assert.deepEqual(parseNbdUri("nbd://example.org/tpl").address, {
    type: "inet",
    host: "example.org",
    port: 10809,
  });
  assert.deepEqual(parseNbdUri("nbd+tcp://[::1]:7000/a/b").address, {
    type: "inet",
    host: "::1",
    port: 7000,
  });
  assert.equal(parseNbdUri("nbd+tcp://[::1]:7000/a/b").exportName, "a/b");
  assert.deepEqual(parseNbdUri("nbd+unix:///exp?socket=/run/x.sock"), {
    address: { type: "unix", path: "/run/x.sock" },
    exportName: "exp",
  });
  assert.equal(parseNbdUri("nbd+unix://?socket=/s").exportName, "");
  assert.equal(parseNbdUri("nbd://h").exportName, "");
  assert.equal(parseNbdUri("nbd+unix:///my%20disk?socket=/tmp/a%20b").exportName, "my disk");
  assert.deepEqual(parseNbdUri("nbd+unix:///e?socket=/tmp/a%20b").address, {
    type: "unix",
    path: "/tmp/a b",
  });
});

Deno.test("parseNbdUri() reads qemu's legacy nbd: syntax", () => {
  assert.deepEqual(parseNbdUri("nbd:unix:/tmp/s.sock:exportname=base"), {
    address: { type: "unix", path: "/tmp/s.sock" },
    exportName: "base",
  });
  assert.deepEqual(parseNbdUri("nbd:127.0.0.1:10809"), {
    address: { type: "inet", host: "127.0.0.1", port: 10809 },
    exportName: "",
  });
});

Deno.test("parseNbdUri() says what is wrong with a bad URI", () => {
  const cases: [string, RegExp][] = [
    ["nbds://h/e", /unknown scheme 'nbds'/],
    ["nbd+unix:///e", /socket=PATH/],
    ["nbd+unix://host/e?socket=/s", /takes no host/],
    ["nbd+unix:///e?socket=/s&x=1", /exactly one/],
    ["nbd:///e", /host is required/],
    ["nbd://h:99999/e", /bad port/],
    ["nbd://h/e?socket=/s", /no query/],
    ["nbd://h/e#frag", /fragment/],
    ["http://h/e", /unknown scheme/],
    ["/tmp/file.raw", /not an NBD URI/],
    ["nbd://h/%zz", /percent-encoding/],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseNbdUri(text), (e) => {
      assert.ok(e instanceof NbdUriError);
      assert.equal(e.code, "NBD_BAD_URI");
      assert.match(e.message, message, text);
      assert.ok(e.message.includes(text));
      return true;
    });
  }
  assert.ok(isNbdUri("nbd+unix:///e?socket=/s"));
  assert.ok(!isNbdUri("base.qed"));
});

Deno.test("formatNbdUri() writes what qemu writes and parses back to the same target", () => {
  assert.equal(
    formatNbdUri({ address: { type: "unix", path: "/tmp/x.sock" }, exportName: "tpl" }),
    "nbd+unix:///tpl?socket=/tmp/x.sock",
  );
  assert.equal(
    formatNbdUri({ address: { type: "inet", host: "::1", port: 10809 }, exportName: "" }),
    "nbd://[::1]:10809/",
  );
  const target: fc.Arbitrary<NbdTarget> = fc.record({
    address: fc.oneof(
      fc.record({
        type: fc.constant("unix" as const),
        path: fc.string({ minLength: 1, maxLength: 30, unit: "grapheme" }),
      }),
      fc.record({
        type: fc.constant("inet" as const),
        host: fc.oneof(fc.domain(), fc.ipV4(), fc.ipV6()),
        port: fc.integer({ min: 0, max: 65535 }),
      }),
    ),
    exportName: fc.string({ maxLength: 30, unit: "grapheme" }),
  });
  for (const seed of seeds()) {
    fc.assert(
      fc.property(target, (t) => {
        const plain = JSON.parse(JSON.stringify(t));
        assert.deepEqual(parseNbdUri(formatNbdUri(t)), plain);
      }),
      { seed, numRuns: 300 },
    );
  }
});

Deno.test("parseNbdBlockdevOptions() reads qemu-storage-daemon's driver=nbd keys", () => {
  assert.deepEqual(
    parseNbdBlockdevOptions({
      driver: "nbd",
      "node-name": "tpl",
      "server.type": "unix",
      "server.path": "/run/s.sock",
      export: "base",
      "reconnect-delay": "5",
    }),
    {
      server: { type: "unix", path: "/run/s.sock" },
      export: "base",
      reconnectDelay: 5,
      openTimeout: 0,
    },
  );
  const inet = {
    "server.type": "inet",
    "server.host": "127.0.0.1",
    "server.port": "10809",
    export: "e",
  };
  const options = parseNbdBlockdevOptions(inet);
  assert.deepEqual(options.server, { type: "inet", host: "127.0.0.1", port: 10809 });
  assert.deepEqual(formatNbdBlockdevOptions(options), inet);
  assert.deepEqual(parseSocketAddress({ "addr.type": "unix", "addr.path": "/s" }, "addr"), {
    type: "unix",
    path: "/s",
  });
  assert.throws(() => parseNbdBlockdevOptions({ "server.type": "unix" }), {
    message: "Parameter 'server.path' is missing",
  });
  assert.throws(
    () => parseNbdBlockdevOptions({ "server.type": "vsock" }),
    /does not accept value 'vsock'/,
  );
  assert.throws(
    () => parseNbdBlockdevOptions({ "server.type": "unix", "server.path": "/s", "tls-creds": "t" }),
    { message: "Parameter 'tls-creds' is unexpected" },
  );
  assert.throws(
    () =>
      parseNbdBlockdevOptions({ "server.type": "unix", "server.path": "/s", "server.port": "1" }),
    { message: "Parameter 'server.port' is unexpected" },
  );
});
