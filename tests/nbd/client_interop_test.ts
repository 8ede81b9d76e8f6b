/**
 * NbdClient against real servers: qemu-nbd exporting raw files, and nbdkit's
 * memory, pattern and sparse-random plugins with its delay and error filters.
 * Every server runs on a Unix socket in a temporary folder and is killed at
 * the end of its test.
 */
import assert from "node:assert/strict";
import { programsPresent, runOk, tempDir } from "../_tools.ts";
import { NbdClient } from "../../nbd/client.ts";
import { NbdRequestError, NbdTimeoutError } from "../../nbd/error.ts";
import { NBD_FLAG_READ_ONLY } from "../../nbd/protocol.ts";
import { pattern, startPeer } from "./_nbd_tools.ts";

const MiB = 1024 * 1024;
const haveQemu = programsPresent("qemu-nbd", "qemu-img");
const haveNbdkit = programsPresent("nbdkit", "qemu-img");

Deno.test({
  name: "NbdClient reads, writes and maps a sparse raw file served by qemu-nbd",
  ignore: !haveQemu,
  fn: async () => {
    await using dir = await tempDir();
    const file = `${dir.path}/base.raw`;
    const sock = `${dir.path}/q.sock`;
    // A truncated file is all hole (qemu-img create would allocate the first block).
    await Deno.writeFile(file, new Uint8Array(0));
    await Deno.truncate(file, 4 * MiB);
    const data = pattern(128 * 1024, 11);
    {
      const f = await Deno.open(file, { write: true });
      await f.seek(MiB, Deno.SeekMode.Start);
      await f.write(data);
      f.close();
    }
    await using _peer = await startPeer(
      "qemu-nbd",
      ["-f", "raw", "-x", "base", "-k", sock, "-t", "--cache=none", file],
      sock,
    );
    const client = await NbdClient.connect({
      address: { type: "unix", path: sock },
      exportName: "base",
    });
    assert.equal(client.size, 4 * MiB);
    assert.ok(client.info.structuredReplies);
    assert.equal(client.info.viaExportName, false);
    const buf = new Uint8Array(data.length + 1000);
    await client.read(MiB - 500, buf);
    assert.ok(buf.subarray(0, 500).every((b) => b === 0));
    assert.deepEqual(buf.subarray(500, 500 + data.length), data);

    assert.deepEqual(await client.blockStatus(0, 4 * MiB), { kind: "zero", length: MiB });
    const run = await client.blockStatus(MiB, 3 * MiB);
    assert.equal(run.kind, "data");
    assert.ok(run.length >= data.length && run.length % 4096 === 0, JSON.stringify(run));
    const tail = await client.blockStatus(MiB + data.length, 3 * MiB - data.length);
    assert.equal(tail.kind, "zero");

    const written = pattern(3 * MiB, 12);
    await client.write(MiB / 2 + 3, written);
    await client.writeZeroes(2 * MiB, 4096 * 3);
    await client.flush();
    await client.close();
    const bytes = await Deno.readFile(file);
    const expected = new Uint8Array(4 * MiB);
    expected.set(data, MiB);
    expected.set(written, MiB / 2 + 3);
    expected.fill(0, 2 * MiB, 2 * MiB + 4096 * 3);
    assert.ok(bytes.length === expected.length && bytes.every((b, i) => b === expected[i]));
  },
});

Deno.test({
  name: "NbdClient sees a read-only qemu-nbd export and gets NBD_EPERM from it",
  ignore: !haveQemu,
  fn: async () => {
    await using dir = await tempDir();
    const file = `${dir.path}/ro.raw`;
    const sock = `${dir.path}/q.sock`;
    await runOk("qemu-img", ["create", "-f", "raw", file, "1M"]);
    await using _peer = await startPeer(
      "qemu-nbd",
      ["-r", "-f", "raw", "-k", sock, "-t", file],
      sock,
    );
    const client = await NbdClient.connect({ address: { type: "unix", path: sock } });
    assert.ok(client.info.flags & NBD_FLAG_READ_ONLY);
    assert.ok(client.readOnly);
    await assert.rejects(client.write(0, new Uint8Array(512)), { code: "NBD_EPERM" });
    await client.close();
  },
});

Deno.test({
  name: "NbdClient against nbdkit memory, pattern and sparse-random plugins",
  ignore: !haveNbdkit,
  fn: async () => {
    await using dir = await tempDir();
    const sockets = ["mem", "pat", "sparse"].map((n) => `${dir.path}/${n}.sock`);
    await using _mem = await startPeer(
      "nbdkit",
      ["-f", "-U", sockets[0]!, "memory", "8M"],
      sockets[0]!,
    );
    await using _pat = await startPeer(
      "nbdkit",
      ["-f", "-U", sockets[1]!, "pattern", "8M"],
      sockets[1]!,
    );
    await using _sparse = await startPeer(
      "nbdkit",
      ["-f", "-U", sockets[2]!, "sparse-random", "16M", "seed=7", "runlength=65536", "percent=20"],
      sockets[2]!,
    );

    const mem = await NbdClient.connect({ address: { type: "unix", path: sockets[0]! } });
    const data = pattern(5 * MiB, 13);
    await mem.write(123, data);
    const back = new Uint8Array(data.length);
    await mem.read(123, back);
    assert.deepEqual(back, data);
    await mem.writeZeroes(0, 8 * MiB);
    assert.deepEqual(await mem.blockStatus(0, 8 * MiB), { kind: "zero", length: 8 * MiB });
    await mem.close();

    // The pattern plugin stores each 8-byte-aligned offset as a big-endian u64.
    const pat = await NbdClient.connect({ address: { type: "unix", path: sockets[1]! } });
    const buf = new Uint8Array(64);
    await pat.read(4 * MiB + 8, buf);
    const dv = new DataView(buf.buffer);
    for (let i = 0; i < 8; i++) assert.equal(Number(dv.getBigUint64(8 * i)), 4 * MiB + 8 + 8 * i);
    await pat.close();

    // sparse-random: holes from block status read as zeros; the data matches qemu-img's copy.
    const sparse = await NbdClient.connect({ address: { type: "unix", path: sockets[2]! } });
    const copy = `${dir.path}/sparse.raw`;
    await runOk("qemu-img", [
      "convert",
      "-f",
      "raw",
      "-O",
      "raw",
      `nbd+unix:///?socket=${sockets[2]}`,
      copy,
    ]);
    const expected = await Deno.readFile(copy);
    const all = new Uint8Array(sparse.size);
    await sparse.read(0, all);
    assert.ok(all.every((b, i) => b === expected[i]), "whole read matches qemu-img convert");
    let at = 0;
    const kinds = new Set<string>();
    while (at < sparse.size) {
      const run = await sparse.blockStatus(at, sparse.size - at);
      kinds.add(run.kind);
      if (run.kind === "zero") assert.ok(all.subarray(at, at + run.length).every((b) => b === 0));
      at += run.length;
    }
    assert.deepEqual([...kinds].sort(), ["data", "zero"]);
    await sparse.close();
  },
});

Deno.test({
  name: "NbdClient pipelines reads over nbdkit's delay filter and times out a slow one",
  ignore: !haveNbdkit,
  fn: async () => {
    await using dir = await tempDir();
    const sock = `${dir.path}/d.sock`;
    await using _peer = await startPeer(
      "nbdkit",
      ["-f", "-U", sock, "--filter=delay", "pattern", "8M", "rdelay=100ms"],
      sock,
    );
    const client = await NbdClient.connect({ address: { type: "unix", path: sock } });
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, (_, i) => client.read(i * 65536, new Uint8Array(65536))),
    );
    const elapsed = performance.now() - t0;
    assert.ok(
      elapsed < 800,
      `16 reads of 100 ms each took ${elapsed.toFixed(0)} ms: not pipelined`,
    );
    await client.close();

    const impatient = await NbdClient.connect({
      address: { type: "unix", path: sock },
      requestTimeout: 30,
      reconnect: false,
    });
    await assert.rejects(impatient.read(0, new Uint8Array(512)), NbdTimeoutError);
    await impatient.close();
  },
});

Deno.test({
  name: "NbdClient reports nbdkit's injected EIO per request and keeps the connection",
  ignore: !haveNbdkit,
  fn: async () => {
    await using dir = await tempDir();
    const sock = `${dir.path}/e.sock`;
    const trigger = `${dir.path}/fail-now`;
    await using _peer = await startPeer(
      "nbdkit",
      [
        "-f",
        "-U",
        sock,
        "--filter=error",
        "memory",
        "1M",
        "error-pread=EIO",
        "error-pread-rate=100%",
        `error-pread-file=${trigger}`,
      ],
      sock,
    );
    const client = await NbdClient.connect({ address: { type: "unix", path: sock } });
    await client.write(0, new Uint8Array(4096).fill(5));
    await Deno.writeFile(trigger, new Uint8Array(0));
    await assert.rejects(client.read(0, new Uint8Array(4096)), (e) => {
      assert.ok(e instanceof NbdRequestError);
      assert.equal(e.code, "NBD_EIO");
      return true;
    });
    await Deno.remove(trigger);
    const buf = new Uint8Array(4096);
    await client.read(0, buf);
    assert.ok(buf.every((b) => b === 5));
    await client.close();
  },
});

Deno.test({
  name: "NbdClient reconnects after nbdkit is killed and restarted on the same socket",
  ignore: !haveNbdkit,
  fn: async () => {
    await using dir = await tempDir();
    const sock = `${dir.path}/r.sock`;
    const args = ["-f", "-U", sock, "pattern", "4M"];
    let peer = await startPeer("nbdkit", args, sock);
    try {
      const events: string[] = [];
      const client = await NbdClient.connect({
        address: { type: "unix", path: sock },
        reconnectDelay: 10000,
        backoffInitial: 20,
        onEvent: (e) => events.push(e.type),
      });
      await client.read(0, new Uint8Array(8));
      await peer.kill();
      await Deno.remove(sock).catch(() => {});
      const buf = new Uint8Array(8);
      const pending = client.read(MiB, buf);
      await new Promise((r) => setTimeout(r, 100));
      peer = await startPeer("nbdkit", args, sock);
      await pending;
      assert.equal(Number(new DataView(buf.buffer).getBigUint64(0)), MiB);
      assert.deepEqual(events, ["disconnected", "reconnected"]);
      await client.close();
    } finally {
      await peer.kill();
    }
  },
});

Deno.test({
  name:
    "NbdClient uses simple replies with nbdkit --no-sr (no structured replies, no block status)",
  ignore: !haveNbdkit,
  fn: async () => {
    await using dir = await tempDir();
    const sock = `${dir.path}/nosr.sock`;
    await using _peer = await startPeer(
      "nbdkit",
      ["-f", "--no-sr", "-U", sock, "pattern", "2M"],
      sock,
    );
    const client = await NbdClient.connect({ address: { type: "unix", path: sock } });
    assert.equal(client.info.structuredReplies, false);
    assert.equal(client.info.baseAllocationId, null);
    const buf = new Uint8Array(3 * 65536);
    await client.read(MiB, buf);
    assert.equal(Number(new DataView(buf.buffer).getBigUint64(65536)), MiB + 65536);
    assert.deepEqual(await client.blockStatus(0, 2 * MiB), { kind: "data", length: 2 * MiB });
    await client.close();
  },
});
