/**
 * Security of the monitor, the export and untrusted images (issue 8, part 5):
 * `qedstream serve` makes its Unix sockets owner-only and refuses a TCP
 * listener off loopback without `--allow-remote`; `openImageFile`'s
 * `backingRoot` refuses backing names that leave the folder; QMP and NBD
 * bound message sizes, sessions/connections and requests in flight, with a
 * clear error.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { BackingChainError } from "../../qed/error.ts";
import { QedImage } from "../../qed/image.ts";
import { openImageFile } from "../../qed/open_file.ts";
import { FileStorage } from "../../io/file_storage.ts";
import { QmpServer } from "../../qmp/server.ts";
import { listen } from "../../qmp/socket_transport.ts";
import { NbdClient } from "../../nbd/client.ts";
import { NbdServer } from "../../nbd/server.ts";
import { streamPair } from "../../nbd/pipe.ts";
import { programsPresent, runOk, tempDir } from "../_tools.ts";
import { assertTyped } from "./_campaign.ts";
import { MemoryTarget } from "../nbd/_nbd_tools.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

async function waitFor(path: string, ms = 15000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await Deno.stat(path);
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

Deno.test({
  name: "qedstream serve creates its QMP and NBD Unix sockets owner-only (0600)",
  ignore: !programsPresent("qemu-img"),
  fn: async () => {
    await using dir = await tempDir();
    const image = join(dir.path, "d.qed");
    await runOk("qemu-img", ["create", "-f", "qed", image, "4M"]);
    const qmp = join(dir.path, "q.sock");
    const nbd = join(dir.path, "n.sock");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        CLI,
        "serve",
        "--blockdev",
        `driver=file,node-name=f,filename=${image}`,
        "--blockdev",
        "driver=qed,node-name=d,file=f",
        "--qmp",
        `unix:${qmp}`,
        "--nbd-server",
        `addr.type=unix,addr.path=${nbd}`,
        "--export",
        "type=nbd,id=e,node-name=d,name=d",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await waitFor(qmp);
      await waitFor(nbd);
      for (const path of [qmp, nbd]) {
        const mode = (await Deno.stat(path)).mode! & 0o777;
        assert.equal(mode, 0o600, `${path}: mode ${mode.toString(8)}`);
      }
    } finally {
      child.kill("SIGTERM");
      await child.status;
    }
  },
});

Deno.test("qedstream serve refuses a TCP monitor off loopback without --allow-remote, with a clear error", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, "serve", "--qmp", "tcp:0.0.0.0:0"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.notEqual(out.code, 0);
  assert.match(stderr, /0\.0\.0\.0/);
  assert.match(stderr, /--allow-remote/);
});

async function overlay(path: string, backing: string): Promise<void> {
  const storage = await FileStorage.open(path, { create: true, truncate: true });
  await QedImage.create(storage, { size: 1 << 20, backingFile: backing, backingFormat: "raw" });
  await storage.close();
}

Deno.test("openImageFile({ backingRoot }) refuses backing names that leave the folder, naming the image and the path", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "images");
  const outside = join(dir.path, "secret.raw");
  await Deno.mkdir(root);
  await Deno.writeFile(outside, new Uint8Array(1 << 20).fill(0x77));
  await Deno.writeFile(join(root, "base.raw"), new Uint8Array(1 << 20).fill(0x11));
  await Deno.symlink(outside, join(root, "link.raw"));
  const cases: [string, string][] = [
    ["abs.qed", outside],
    ["dotdot.qed", "../secret.raw"],
    ["link.qed", "link.raw"],
    ["missing-outside.qed", "../nowhere.raw"],
  ];
  for (const [name, backing] of cases) {
    const path = join(root, name);
    await overlay(path, backing);
    await assert.rejects(openImageFile(path, { readOnly: true, backingRoot: root }), (e) => {
      assert.ok(e instanceof BackingChainError, String(e));
      assert.equal(e.code, "QED_BACKING_OUTSIDE_ROOT");
      assert.ok(e.message.includes(path), e.message);
      assert.ok(e.message.includes(backing), e.message);
      assert.ok(e.message.includes("outside the allowed folder"), e.message);
      return true;
    }, name);
    // Without the option the name is followed, as qemu does.
    if (name !== "missing-outside.qed") {
      const opened = await openImageFile(path, { readOnly: true });
      await opened.close();
    }
  }
  // Names inside the folder, relative or absolute, still open.
  for (const [name, backing] of [["rel.qed", "base.raw"], ["absin.qed", join(root, "base.raw")]]) {
    const path = join(root, name!);
    await overlay(path, backing!);
    const opened = await openImageFile(path, { readOnly: true, backingRoot: root });
    const b = new Uint8Array(4);
    await opened.image.read(0, b);
    assert.deepEqual(b, new Uint8Array(4).fill(0x11));
    await opened.close();
  }
});

async function qmpLines(conn: Deno.Conn, want: number, ms = 3000): Promise<string[]> {
  const dec = new TextDecoder();
  let text = "";
  const buf = new Uint8Array(65536);
  const deadline = Date.now() + ms;
  while (text.split("\n").filter(Boolean).length < want && Date.now() < deadline) {
    const n = await Promise.race([
      conn.read(buf),
      new Promise<null>((r) => setTimeout(() => r(null), 200)),
    ]);
    if (n === null) break;
    text += dec.decode(buf.subarray(0, n));
  }
  return text.split("\n").filter(Boolean);
}

Deno.test("QMP limits: sessions beyond maxSessions and oversized messages get clear errors", async () => {
  await using dir = await tempDir();
  const server = new QmpServer({ maxSessions: 2, parserLimits: { maxTokenSize: 4096 } });
  const path = join(dir.path, "q.sock");
  const listener = await listen(server, { path });
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = await Deno.connect({ transport: "unix", path });
      conns.push(c);
      assert.match((await qmpLines(c, 1))[0]!, /"QMP"/);
    }
    const third = await Deno.connect({ transport: "unix", path });
    conns.push(third);
    const refused = await qmpLines(third, 1);
    assert.match(refused.join("\n"), /Too many QMP sessions \(at most 2\)/);
    // An oversized message: an error reply, and the session goes on.
    const first = conns[0]!;
    const enc = new TextEncoder();
    await first.write(enc.encode('{"execute":"qmp_capabilities"}\n'));
    assert.match((await qmpLines(first, 1))[0]!, /"return"/);
    await first.write(enc.encode(`{"execute":"x","arguments":{"a":"${"y".repeat(8000)}"}}\n`));
    const reply = (await qmpLines(first, 1)).join("\n");
    assert.match(reply, /"error"/);
    assert.match(reply, /JSON|too (big|large)|limit/i);
    await first.write(enc.encode('{"execute":"query-version"}\n'));
    assert.match((await qmpLines(first, 1)).join("\n"), /"return"|"error"/);
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch { /* closed by the server */ }
    }
    await listener.close();
    server.close();
  }
});

Deno.test("NBD limits: connections beyond maxConnections are refused with a typed error; maxInFlight bounds the work", async () => {
  const server = new NbdServer({ maxConnections: 2, maxInFlight: 2 });
  const target = new MemoryTarget(1 << 20);
  server.addExport({ name: "disk", target });
  const connect = () => {
    const [a, b] = streamPair();
    server.serve(b);
    return Promise.resolve(a);
  };
  const one = await NbdClient.connect({ connect, exportName: "disk" });
  const two = await NbdClient.connect({ connect, exportName: "disk" });
  await assert.rejects(NbdClient.connect({ connect, exportName: "disk" }), (e) => {
    assertTyped(e, "third connection");
    assert.equal(e.code, "NBD_CONNECT_FAILED");
    return true;
  });
  await Promise.all(Array.from({ length: 32 }, (_, i) => one.read(i * 512, new Uint8Array(512))));
  assert.ok(target.maxActive <= 2, `max active ${target.maxActive}`);
  await one.close();
  await two.close();
  await server.close();
});
