import assert from "node:assert/strict";
import { parseDaemonArgs, parseSocketAddress } from "../../daemon/args.ts";
import { OptionError } from "../../daemon/keyval.ts";

function refused(argv: string[], message: string) {
  assert.throws(() => parseDaemonArgs(argv), (e: unknown) => {
    assert.ok(e instanceof OptionError, String(e));
    assert.equal(e.message, message);
    return true;
  });
}

Deno.test("parseDaemonArgs() reads qemu-storage-daemon's command line", () => {
  const config = parseDaemonArgs([
    "--blockdev",
    "driver=file,node-name=f0,filename=ov.qed",
    "--blockdev=driver=qed,node-name=ov,file=f0",
    "--chardev",
    "socket,id=m,path=/tmp/m.sock,server=on,wait=off",
    "--monitor",
    "m",
    "--qmp",
    "tcp:127.0.0.1:4444",
    "--nbd-server",
    "addr.type=unix,addr.path=/tmp/n.sock",
    "--export",
    "type=nbd,id=e0,node-name=ov,writable=on",
  ]);
  assert.deepEqual(config.blockdevs.map((b) => b["node-name"]), ["f0", "ov"]);
  assert.deepEqual(config.monitors, [
    { id: "qmp0", address: { type: "inet", host: "127.0.0.1", port: 4444 }, pretty: false },
    { id: "m", address: { type: "unix", path: "/tmp/m.sock" }, pretty: false },
  ]);
  assert.deepEqual(config.nbdServer, { address: { type: "unix", path: "/tmp/n.sock" } });
  assert.deepEqual(config.exports, [{ id: "e0", nodeName: "ov", name: "ov", writable: true }]);
});

Deno.test("parseDaemonArgs() refuses what qemu-storage-daemon refuses, with its texts", () => {
  refused(["--foo"], "unrecognized option '--foo'");
  refused(["--blockdev"], "option '--blockdev' requires an argument");
  refused(
    ["--blockdev", "driver=nosuch,node-name=f0"],
    "--blockdev driver=nosuch,node-name=f0: Parameter 'driver' does not accept value 'nosuch'",
  );
  refused(["--monitor", "m"], `--monitor m: chardev "m" not found`);
  refused(["--chardev", "socket"], "--chardev socket: chardev: no id specified");
  refused(
    ["--chardev", "socket,id=m,path=/x,server=on,bogus=1"],
    "--chardev socket,id=m,path=/x,server=on,bogus=1: Invalid parameter 'bogus'",
  );
  refused(
    ["--chardev", "socket,id=m,path=/x,server=on", "--monitor", "m,mode=readline"],
    "--monitor m,mode=readline: Only QMP is supported",
  );
  refused(
    ["--nbd-server", "addr.type=unix"],
    "--nbd-server addr.type=unix: Parameter 'addr.path' is missing",
  );
  refused(["--nbd-server", "addr"], "--nbd-server addr: Expected '=' after parameter 'addr'");
  refused(["--export", "nbd"], "--export nbd: Parameter 'id' is missing");
  refused(
    ["--export", "type=nbd,id=e"],
    "--export type=nbd,id=e: Parameter 'node-name' is missing",
  );
});

Deno.test("parseSocketAddress() reads unix:PATH and tcp:HOST:PORT", () => {
  assert.deepEqual(parseSocketAddress("unix:/a/b"), { type: "unix", path: "/a/b" });
  assert.deepEqual(parseSocketAddress("tcp:[::1]:99"), { type: "inet", host: "::1", port: 99 });
  assert.throws(() => parseSocketAddress("udp:x"), OptionError);
});
