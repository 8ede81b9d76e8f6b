/**
 * `serve --working-set NODE=FILE` and `serve --record-working-set NODE=FILE`:
 * parsed beside qemu-storage-daemon's options, recorded from guest reads
 * through an NBD export, written at shutdown, and replayed first by a plain
 * `block-stream`.
 */
import assert from "node:assert/strict";
import { parseDaemonArgs } from "../../daemon/args.ts";
import { Daemon } from "../../daemon/daemon.ts";
import { templateFingerprint } from "../../block/template_fingerprint.ts";
import { type ByteRange, decodeWorkingSet, encodeWorkingSet } from "../../block/working_set.ts";
import { QmpClient } from "../../qmp/client.ts";
import { programsPresent, run, runOk, tempDir } from "../_tools.ts";
import { Nbdkit } from "../nbd/_nbdkit.ts";

const KiB = 1024;
const MiB = 1 << 20;
const SIZE = 8 * MiB;
const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** A template of `SIZE` bytes with distinct data in every 64 KiB, and a QED overlay file. */
async function images(dir: string, backed: boolean): Promise<Uint8Array> {
  const bytes = new Uint8Array(SIZE);
  for (let at = 0; at < SIZE; at += 64 * KiB) bytes.fill(((at >> 16) % 251) + 1, at, at + 64 * KiB);
  crypto.getRandomValues(bytes.subarray(0, 4096));
  await Deno.writeFile(`${dir}/tpl.raw`, bytes);
  const backing = backed ? ["-b", "tpl.raw", "-F", "raw"] : [];
  await runOk("qemu-img", ["create", "-q", "-f", "qed", ...backing, `${dir}/ov.qed`, "8M"]);
  return bytes;
}

Deno.test("parseDaemonArgs() reads --working-set and --record-working-set as NODE=FILE", () => {
  const config = parseDaemonArgs([
    "--working-set",
    "ov=boot.ws",
    "--record-working-set=ov=next=1.ws",
    "--working-set",
    "other=b.ws",
  ]);
  assert.deepEqual(config.workingSets, [
    { nodeName: "ov", file: "boot.ws" },
    { nodeName: "other", file: "b.ws" },
  ]);
  assert.deepEqual(config.recordWorkingSets, [{ nodeName: "ov", file: "next=1.ws" }]);
  assert.deepEqual(parseDaemonArgs([]).workingSets, []);
  assert.throws(() => parseDaemonArgs(["--working-set", "boot.ws"]), {
    message: "--working-set boot.ws: expected NODE=FILE",
  });
  assert.throws(() => parseDaemonArgs(["--record-working-set", "ov="]), {
    message: "--record-working-set ov=: expected NODE=FILE",
  });
  assert.throws(() => parseDaemonArgs(["--working-set", "ov=a", "--working-set", "ov=b"]), {
    message: "--working-set ov=b: node 'ov' already has a working-set file",
  });
  assert.throws(() => parseDaemonArgs(["--working-set"]), {
    message: "option '--working-set' requires an argument",
  });
});

Deno.test({
  name: "serve --record-working-set records qemu-io's reads through an NBD export and writes " +
    "the file on quit; --working-set takes it back and refuses another template's",
  ignore: !programsPresent("qemu-img", "qemu-io"),
  async fn() {
    await using dir = await tempDir();
    const d = dir.path;
    const template = await images(d, true);
    const blockdevs = [
      "--blockdev",
      `driver=file,node-name=f0,filename=${d}/ov.qed`,
      "--blockdev",
      "driver=qed,node-name=ov,file=f0",
    ];
    const daemon = await Daemon.start(parseDaemonArgs([
      ...blockdevs,
      "--nbd-server",
      `addr.type=unix,addr.path=${d}/nbd.sock`,
      "--export",
      "type=nbd,id=e0,node-name=ov",
      "--record-working-set",
      `ov=${d}/boot.ws`,
      "--qmp",
      `unix:${d}/qmp.sock`,
    ]));
    const uri = `nbd+unix:///ov?socket=${d}/nbd.sock`;
    await runOk("qemu-io", [
      "-r",
      "-f",
      "raw",
      "-c",
      "read 6M 128k",
      "-c",
      "read 1M 64k",
      "-c",
      "read 6M 64k", // already recorded: adds nothing
      "-c",
      "read 3136k 96k",
      uri,
    ]);
    const qmp = await QmpClient.connect({ path: `${d}/qmp.sock` });
    await qmp.execute("quit");
    qmp.close();
    await daemon.closed;
    assert.deepEqual(daemon.shutdownErrors, []);

    const ws = decodeWorkingSet(await Deno.readFile(`${d}/boot.ws`));
    assert.deepEqual(ws.ranges, [
      { offset: 6 * MiB, length: 128 * KiB },
      { offset: 1 * MiB, length: 64 * KiB },
      { offset: 3136 * KiB, length: 96 * KiB },
    ]);
    assert.equal(ws.templateSize, SIZE);
    const source = {
      size: SIZE,
      read: (offset: number, buf: Uint8Array) => {
        buf.set(template.subarray(offset, offset + buf.length));
        return Promise.resolve();
      },
    };
    assert.deepEqual(ws.fingerprint, await templateFingerprint(source));

    // The recorded file matches the chain it was recorded on...
    const again = await Daemon.start(
      parseDaemonArgs([...blockdevs, "--working-set", `ov=${d}/boot.ws`]),
    );
    await again.close();
    // ...and not another one: start-up fails in one line naming the option.
    const other = template.slice();
    other[0] = other[0]! ^ 0xff;
    await Deno.writeFile(`${d}/tpl.raw`, other);
    const bad = await run(Deno.execPath(), [
      "run",
      "-A",
      CLI,
      "serve",
      ...blockdevs,
      "--working-set",
      `ov=${d}/boot.ws`,
    ]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /^qedstream: --working-set ov=\S+boot\.ws: Working set is for another template: fingerprint [0-9a-f]{16}…, the template's is [0-9a-f]{16}…\n$/,
    );
    const missing = await run(Deno.execPath(), [
      "run",
      "-A",
      CLI,
      "serve",
      ...blockdevs,
      "--record-working-set",
      `nosuch=${d}/x.ws`,
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^qedstream: --record-working-set nosuch=\S+x\.ws: .*\n$/);
  },
});

Deno.test({
  name: "serve --record-working-set writes the file on SIGTERM",
  ignore: !programsPresent("qemu-img", "qemu-io"),
  async fn() {
    await using dir = await tempDir();
    const d = dir.path;
    await images(d, true);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        CLI,
        "serve",
        "--blockdev",
        `driver=file,node-name=f0,filename=${d}/ov.qed`,
        "--blockdev",
        "driver=qed,node-name=ov,file=f0",
        "--nbd-server",
        `addr.type=unix,addr.path=${d}/nbd.sock`,
        "--export",
        "type=nbd,id=e0,node-name=ov",
        "--record-working-set",
        `ov=${d}/boot.ws`,
        "--pidfile",
        `${d}/pid`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    for (let i = 0; i < 400; i++) {
      if (await Deno.stat(`${d}/pid`).then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    await runOk("qemu-io", [
      "-r",
      "-f",
      "raw",
      "-c",
      "read 2M 64k",
      `nbd+unix:///ov?socket=${d}/nbd.sock`,
    ]);
    child.kill("SIGTERM");
    const status = await child.output();
    const stderr = new TextDecoder().decode(status.stderr);
    assert.equal(status.code, 0, stderr);
    assert.match(stderr, /working set of 'ov' written to \S+boot\.ws: 1 ranges, 65536 bytes/);
    const ws = decodeWorkingSet(await Deno.readFile(`${d}/boot.ws`));
    assert.deepEqual(ws.ranges, [{ offset: 2 * MiB, length: 64 * KiB }]);
  },
});

/** The reads nbdkit's log filter noted, in the order they arrived. */
function loggedReads(log: string): ByteRange[] {
  return [...log.matchAll(/Read id=\d+ offset=(0x[0-9a-f]+) count=(0x[0-9a-f]+)/g)].map((m) => ({
    offset: Number(m[1]),
    length: Number(m[2]),
  }));
}

/** Streams `ov` with `command` under `--working-set` and checks the backing server saw the ranges first. */
async function streamsWorkingSetFirst(command: string): Promise<void> {
  await using dir = await tempDir();
  const d = dir.path;
  const template = await images(d, false);
  await using kit = await Nbdkit.start(`${d}/tpl.sock`, [
    "--filter=log",
    "file",
    `${d}/tpl.raw`,
    `logfile=${d}/reads.log`,
  ]);
  const ranges = [
    { offset: 6 * MiB, length: 128 * KiB },
    { offset: 1 * MiB, length: 64 * KiB },
    { offset: 3 * MiB + 64 * KiB, length: 64 * KiB },
  ];
  const source = {
    size: SIZE,
    read: (offset: number, buf: Uint8Array) => {
      buf.set(template.subarray(offset, offset + buf.length));
      return Promise.resolve();
    },
  };
  await Deno.writeFile(
    `${d}/boot.ws`,
    encodeWorkingSet({
      templateSize: SIZE,
      fingerprint: await templateFingerprint(source),
      ranges,
    }),
  );
  const daemon = await Daemon.start(parseDaemonArgs([
    "--blockdev",
    `driver=nbd,node-name=tpl,server.type=unix,server.path=${kit.socket},export=tpl`,
    "--blockdev",
    `driver=file,node-name=f0,filename=${d}/ov.qed`,
    "--blockdev",
    "driver=qed,node-name=ov,file=f0,backing=tpl",
    "--working-set",
    `ov=${d}/boot.ws`,
    "--qmp",
    `unix:${d}/qmp.sock`,
  ]));
  try {
    // Start-up read the template's fingerprint; what follows is the stream's.
    const before = loggedReads(await Deno.readTextFile(`${d}/reads.log`)).length;
    const qmp = await QmpClient.connect({ path: `${d}/qmp.sock` });
    const done = qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 20_000 });
    await qmp.execute(command, { "job-id": "s0", device: "ov" });
    const event = await done;
    assert.equal(event.data?.error, undefined);
    assert.equal(event.data?.offset, SIZE);
    qmp.close();
    const reads = loggedReads(await Deno.readTextFile(`${d}/reads.log`)).slice(before);
    const wsBytes = ranges.reduce((n, r) => n + r.length, 0);
    const inside = (r: ByteRange) =>
      ranges.some((w) => r.offset >= w.offset && r.offset + r.length <= w.offset + w.length);
    let covered = 0;
    let firstOutside = reads.findIndex((r) => !inside(r));
    if (firstOutside < 0) firstOutside = reads.length;
    for (const r of reads.slice(0, firstOutside)) covered += r.length;
    assert.equal(
      covered,
      wsBytes,
      `the working set is read before anything else: ${JSON.stringify(reads.slice(0, 8))}`,
    );
    assert.equal(reads.slice(firstOutside).filter(inside).length, 0, "and never again");
    // In the recorded order (the overlay is empty, so nothing lets a later piece overtake).
    const order = reads.slice(0, firstOutside).map((r) =>
      ranges.findIndex((w) => r.offset >= w.offset && r.offset < w.offset + w.length)
    );
    assert.deepEqual(order.filter((i, n) => order[n - 1] !== i), [0, 1, 2]);
  } finally {
    await daemon.close();
  }
  await runOk("qemu-img", ["compare", "-f", "qed", "-F", "raw", `${d}/ov.qed`, `${d}/tpl.raw`]);
}

for (const command of ["block-stream", "__com.qedstream_block-stream"]) {
  Deno.test({
    name: `serve --working-set: ${command} naming no working set reads the recorded ranges ` +
      "from the backing server first, in order, then the rest; the image equals the template",
    ignore: !programsPresent("nbdkit", "qemu-img"),
    fn: () => streamsWorkingSetFirst(command),
  });
}
