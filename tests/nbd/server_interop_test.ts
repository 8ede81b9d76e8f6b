/**
 * NbdServer against real clients: qemu-io, qemu-img (map, compare), and
 * libnbd's nbdinfo and nbdcopy, each talking to an export on a Unix socket
 * in a temporary folder.
 */
import assert from "node:assert/strict";
import { programsPresent, run, runOk, tempDir } from "../_tools.ts";
import { NbdServer } from "../../nbd/server.ts";
import { formatNbdUri } from "../../nbd/uri.ts";
import { MemoryTarget, pattern } from "./_nbd_tools.ts";

const MiB = 1024 * 1024;
const haveQemu = programsPresent("qemu-io", "qemu-img");
const haveLibnbd = programsPresent("nbdinfo", "nbdcopy");

/** A server with a writable "disk" and a read-only "tpl" on a socket in `dir`. */
function serve(dir: string, size = 4 * MiB) {
  const server = new NbdServer();
  const disk = new MemoryTarget(size);
  const tpl = new MemoryTarget(size);
  tpl.write(MiB, pattern(256 * 1024, 21));
  server.addExport({ name: "disk", target: disk, description: "scratch disk" });
  server.addExport({ name: "tpl", target: tpl, readOnly: true });
  const path = `${dir}/nbd.sock`;
  server.listen({ type: "unix", path });
  const uri = (name: string) => formatNbdUri({ address: { type: "unix", path }, exportName: name });
  return { server, disk, tpl, path, uri };
}

Deno.test({
  name: "NbdServer serves qemu-io's read, write, write -z and pattern checks",
  ignore: !haveQemu,
  fn: async () => {
    await using dir = await tempDir();
    const { server, disk, uri } = serve(dir.path);
    try {
      const out = await runOk("qemu-io", [
        "-f",
        "raw",
        uri("disk"),
        "-c",
        "write -P 0xab 0 64k",
        "-c",
        "write -P 0xcd 1000 5000",
        "-c",
        "write -z 1M 128k",
        "-c",
        "write -P 0x11 2M 2M",
        "-c",
        "read -P 0xab 0 1000",
        "-c",
        "read -P 0xcd 1000 5000",
        "-c",
        "read -P 0 1M 128k",
        "-c",
        "read -P 0x11 2M 2M",
        "-c",
        "flush",
        "-c",
        "discard 3M 64k",
      ]);
      assert.doesNotMatch(out, /Pattern verification failed|error/i, out);
      assert.equal(disk.bytes[0], 0xab);
      assert.equal(disk.bytes[1000], 0xcd);
      assert.equal(disk.bytes[6000], 0xab);
      assert.equal(disk.bytes[2 * MiB + 5], 0x11);
      assert.equal(disk.state[MiB / 4096], "zero");
      assert.ok(disk.flushes >= 1);

      const ro = await run("qemu-io", ["-f", "raw", uri("tpl"), "-c", "write -P 1 0 4k"]);
      assert.match(ro.stdout + ro.stderr, /Operation not permitted|read-only|Permission denied/i);
      const ok = await runOk("qemu-io", ["-r", "-f", "raw", uri("tpl"), "-c", "read -P 0 0 1M"]);
      assert.doesNotMatch(ok, /failed/i);
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "qemu-img map and compare see the export's holes and data",
  ignore: !haveQemu,
  fn: async () => {
    await using dir = await tempDir();
    const { server, tpl, uri } = serve(dir.path);
    try {
      const map = JSON.parse(
        await runOk("qemu-img", ["map", "--output", "json", "-f", "raw", uri("tpl")]),
      ) as { start: number; length: number; data: boolean; zero: boolean }[];
      const simple = map.map((e) => ({
        start: e.start,
        length: e.length,
        data: e.data,
        zero: e.zero,
      }));
      assert.deepEqual(simple, [
        { start: 0, length: MiB, data: false, zero: true },
        { start: MiB, length: 256 * 1024, data: true, zero: false },
        { start: MiB + 256 * 1024, length: 3 * MiB - 256 * 1024, data: false, zero: true },
      ]);
      const copy = `${dir.path}/copy.raw`;
      await Deno.writeFile(copy, tpl.bytes);
      await runOk("qemu-img", ["compare", "-f", "raw", "-F", "raw", copy, uri("tpl")]);
      const differ = tpl.bytes.slice();
      differ[MiB + 77] = differ[MiB + 77]! ^ 1;
      await Deno.writeFile(copy, differ);
      const r = await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", copy, uri("tpl")]);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /Content mismatch at offset 1048576/);
    } finally {
      await server.close();
    }
  },
});

Deno.test({
  name: "nbdinfo lists the exports and their flags; nbdcopy copies in and out",
  ignore: !haveLibnbd,
  fn: async () => {
    await using dir = await tempDir();
    const { server, disk, tpl, uri } = serve(dir.path);
    try {
      const list = await runOk("nbdinfo", ["--list", "--json", uri("")]);
      const exports = JSON.parse(list).exports as { "export-name": string; description?: string }[];
      assert.deepEqual(exports.map((e) => e["export-name"]), ["disk", "tpl"]);
      const info = JSON.parse(await runOk("nbdinfo", ["--json", uri("tpl")]));
      const e = info.exports[0];
      assert.equal(e["export-size"], 4 * MiB);
      assert.equal(e["is_read_only"], true);
      assert.deepEqual(e.contexts, ["base:allocation"]);
      assert.equal(info.protocol, "newstyle-fixed");
      const map = await runOk("nbdinfo", ["--map", uri("tpl")]);
      assert.match(map, /^\s*0\s+1048576\s+3\s+hole,zero$/m);
      assert.match(map, /^\s*1048576\s+262144\s+0\s+data$/m);

      const out = `${dir.path}/out.raw`;
      await runOk("nbdcopy", [uri("tpl"), out]);
      assert.deepEqual(await Deno.readFile(out), tpl.bytes);
      const src = `${dir.path}/src.raw`;
      const data = pattern(4 * MiB, 22);
      await Deno.writeFile(src, data);
      await runOk("nbdcopy", ["--connections=4", "--requests=16", src, uri("disk")]);
      assert.ok(disk.bytes.every((b, i) => b === data[i]));
    } finally {
      await server.close();
    }
  },
});
