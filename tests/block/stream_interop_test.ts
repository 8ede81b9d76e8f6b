/**
 * Interop: a QED overlay made by qemu-img, streamed by qedstream, checked by
 * qemu-img; and the header compared with one qemu-storage-daemon streamed.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { JobRegistry } from "../../block/job_registry.ts";
import { openNodeChain } from "../../block/open_chain.ts";
import { startStream } from "../../block/stream_job.ts";
import { streamOne } from "../../block/stream_one.ts";
import { programsPresent, run, runOk, tempDir } from "../_tools.ts";

/** The transcripts' images, at 8 MiB: base data at [0, 2M) and [5M, 6M); the overlay holds [1M, 2M). */
async function images(dir: string, tag: string) {
  const base = join(dir, `${tag}-base.raw`);
  const ov = join(dir, `${tag}-ov.qed`);
  const expected = join(dir, `${tag}-expected.raw`);
  await runOk("qemu-img", ["create", "-q", "-f", "raw", base, "8M"]);
  await runOk("qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -P 0xaa 0 2M",
    "-c",
    "write -P 0xbb 5M 1M",
    base,
  ]);
  await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", base, "-F", "raw", ov]);
  await runOk("qemu-io", ["-f", "qed", "-c", "write -P 0xcc 1M 1M", ov]);
  await Deno.copyFile(base, expected);
  await runOk("qemu-io", ["-f", "raw", "-c", "write -P 0xcc 1M 1M", expected]);
  return { base, ov, expected };
}

async function header(path: string, length = 64): Promise<Uint8Array> {
  const file = await Deno.open(path);
  try {
    const buf = new Uint8Array(length);
    await file.read(buf);
    return buf;
  } finally {
    file.close();
  }
}

async function assertIndependent(ov: string, expected: string) {
  const info = await runOk("qemu-img", ["info", ov]);
  assert.ok(!/backing file/i.test(info), info);
  const check = await run("qemu-img", ["check", ov]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /No errors were found on the image/);
  const cmp = await run("qemu-img", ["compare", "-f", "qed", "-F", "raw", ov, expected]);
  assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
  assert.match(cmp.stdout, /Images are identical/);
}

/** Streams `ov` with qemu-storage-daemon's block-stream over a tiny QMP client. */
async function qsdStream(
  dir: string,
  ov: string,
  extra: Record<string, string> = {},
): Promise<void> {
  const sock = join(dir, "qsd.sock");
  const daemon = new Deno.Command("qemu-storage-daemon", {
    args: [
      "--blockdev",
      `driver=file,node-name=f0,filename=${ov}`,
      "--blockdev",
      "driver=qed,node-name=ov,file=f0",
      "--chardev",
      `socket,id=c0,path=${sock},server=on,wait=off`,
      "--monitor",
      "chardev=c0",
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    let conn: Deno.UnixConn | undefined;
    for (let i = 0; i < 100 && !conn; i++) {
      try {
        conn = await Deno.connect({ transport: "unix", path: sock });
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.ok(conn, "qemu-storage-daemon did not open its socket");
    const enc = new TextEncoder();
    const dec = new TextDecoder();
    let pending = "";
    const reader = conn.readable.getReader();
    const nextLine = async (): Promise<Record<string, unknown>> => {
      for (;;) {
        const nl = pending.indexOf("\n");
        if (nl >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          return JSON.parse(line);
        }
        const { value, done } = await reader.read();
        if (done) throw new Error("QMP connection closed");
        pending += dec.decode(value);
      }
    };
    const send = (cmd: unknown) => conn!.write(enc.encode(JSON.stringify(cmd) + "\n"));
    await nextLine(); // greeting
    await send({ execute: "qmp_capabilities" });
    await nextLine();
    await send({ execute: "block-stream", arguments: { "job-id": "s0", device: "ov", ...extra } });
    for (;;) {
      const msg = await nextLine();
      assert.ok(!("error" in msg), JSON.stringify(msg));
      const data = msg.data as { status?: string } | undefined;
      if (msg.event === "JOB_STATUS_CHANGE" && data?.status === "null") break;
    }
    await send({ execute: "quit" });
    try {
      while (true) await nextLine();
    } catch { /* closed */ }
    reader.releaseLock();
    try {
      conn.close();
    } catch { /* the daemon closed it */ }
  } finally {
    const status = await daemon.status;
    await daemon.stderr.cancel().catch(() => {});
    assert.equal(status.code, 0);
  }
}

Deno.test({
  name:
    "startStream() leaves a qemu-made overlay independent, clean, identical, with qemu's header",
  ignore: !programsPresent("qemu-img", "qemu-io", "qemu-storage-daemon"),
  async fn() {
    await using dir = await tempDir();
    const ours = await images(dir.path, "ours");
    const theirs = await images(dir.path, "qsd");

    const chain = await openNodeChain(ours.ov);
    const jobs = new JobRegistry();
    const job = startStream(jobs, chain.top, { jobId: "s0" });
    await job.concluded;
    assert.equal(job.error, undefined);
    await chain.close();
    await assertIndependent(ours.ov, ours.expected);

    await qsdStream(dir.path, theirs.ov);
    await assertIndependent(theirs.ov, theirs.expected);

    const mine = await header(ours.ov);
    const qemu = await header(theirs.ov);
    const view = new DataView(mine.buffer);
    assert.equal(view.getBigUint64(16, true), 0n, "features");
    assert.equal(view.getUint32(56, true), 0x40, "backing_filename_offset");
    assert.equal(view.getUint32(60, true), 0, "backing_filename_size");
    assert.deepEqual(mine, qemu, "the first 64 header bytes equal qemu-storage-daemon's");
    const map = JSON.parse(await runOk("qemu-img", ["map", "--output=json", ours.ov]));
    const qmap = JSON.parse(await runOk("qemu-img", ["map", "--output=json", theirs.ov]));
    const shape = (
      m: { start: number; length: number; depth: number; zero: boolean; data: boolean }[],
    ) => m.map((e) => [e.start, e.length, e.depth, e.zero, e.data]);
    assert.deepEqual(shape(map), shape(qmap), "same allocation and zero clusters as qemu");
  },
});

Deno.test({
  name: "a cancelled stream stays consistent for qemu-img and a second stream completes it",
  ignore: !programsPresent("qemu-img", "qemu-io"),
  async fn() {
    await using dir = await tempDir();
    const { ov, expected } = await images(dir.path, "cancel");
    let chain = await openNodeChain(ov);
    const jobs = new JobRegistry();
    const job = startStream(jobs, chain.top, { jobId: "s0", speed: 64 * 1048576, parallel: 1 });
    while (job.currentProgress < 3 * 1048576) await new Promise((r) => setTimeout(r, 5));
    job.cancel();
    await job.concluded;
    assert.equal(job.error, "Operation canceled");
    await chain.close();
    const info = await runOk("qemu-img", ["info", ov]);
    assert.match(info, /backing file: .*cancel-base\.raw/);
    assert.equal((await run("qemu-img", ["check", ov])).code, 0);
    const cmp = await run("qemu-img", ["compare", "-f", "qed", "-F", "raw", ov, expected]);
    assert.equal(cmp.code, 0, cmp.stdout);

    chain = await openNodeChain(ov);
    let at = 0;
    let steps = 0;
    for (;;) {
      const r = await streamOne(chain.top, at);
      steps++;
      if (r.done) {
        assert.ok(r.completed);
        break;
      }
      at = r.next;
    }
    assert.ok(steps > 2);
    await chain.close();
    await assertIndependent(ov, expected);
  },
});

Deno.test({
  name: "startStream() with a base writes the same header as qemu-storage-daemon",
  ignore: !programsPresent("qemu-img", "qemu-io", "qemu-storage-daemon"),
  async fn() {
    await using dir = await tempDir();
    const made: Record<string, { top: string; base: string; expected: string }> = {};
    for (const tag of ["our", "qsd"]) {
      const base = join(dir.path, `${tag}-base.raw`);
      const mid = join(dir.path, `${tag}-mid.qed`);
      const top = join(dir.path, `${tag}-top.qed`);
      const expected = join(dir.path, `${tag}-expected.raw`);
      await runOk("qemu-img", ["create", "-q", "-f", "raw", base, "4M"]);
      await runOk("qemu-io", ["-f", "raw", "-c", "write -P 0xaa 0 1M", base]);
      await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", base, "-F", "raw", mid]);
      await runOk("qemu-io", ["-f", "qed", "-c", "write -P 0xbb 2M 1M", mid]);
      await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", mid, "-F", "qed", top]);
      await runOk("qemu-io", ["-f", "qed", "-c", "write -P 0xcc 512k 1M", top]);
      await runOk("qemu-img", ["convert", "-O", "raw", top, expected]);
      made[tag] = { top, base, expected };
    }
    const ours = made.our!;
    const theirs = made.qsd!;
    const chain = await openNodeChain(ours.top);
    const job = startStream(new JobRegistry(), chain.top, { jobId: "s0", base: ours.base });
    await job.concluded;
    assert.equal(job.error, undefined);
    await chain.close();
    await qsdStream(dir.path, theirs.top, { base: theirs.base });

    for (const { top, base, expected } of [ours, theirs]) {
      const info = await runOk("qemu-img", ["info", top]);
      assert.match(info, new RegExp(`backing file: ${base.replaceAll(".", "\\.")}`));
      assert.match(info, /backing file format: raw/);
      assert.equal((await run("qemu-img", ["check", top])).code, 0);
      const cmp = await run("qemu-img", ["compare", "-F", "raw", top, expected]);
      assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
    }
    // Same header bytes up to the name; the names differ only by the tag, of equal length.
    const nameLength = new TextEncoder().encode(ours.base).length;
    const mine = await header(ours.top, 64 + nameLength);
    const qemu = await header(theirs.top, 64 + nameLength);
    assert.deepEqual(mine.subarray(0, 64), qemu.subarray(0, 64));
    assert.equal(new TextDecoder().decode(mine.subarray(64)), ours.base);
    assert.equal(new TextDecoder().decode(qemu.subarray(64)), theirs.base);
  },
});
