import assert from "node:assert/strict";
import { JobRegistry } from "../../block/job_registry.ts";
import type { JobEvent } from "../../block/job.ts";
import { openNodeChain } from "../../block/open_chain.ts";
import { startStream } from "../../block/stream_job.ts";
import { createCommand } from "../../cli/create.ts";
import { BufferedOutput } from "../../cli/output.ts";
import { runStream } from "../../cli/stream.ts";
import { programsPresent, runOk, tempDir } from "../_tools.ts";
import { assertSameImage, backingOf, Nbdkit, writeStripes } from "./_nbdkit.ts";

const MiB = 1 << 20;
const present = () => programsPresent("nbdkit", "qemu-img", "qemu-io");

Deno.test({
  name: "openNodeChain() opens a qemu-img overlay backed by nbd+unix:// and `stream` completes it",
  ignore: !present(),
  async fn() {
    await using dir = await tempDir();
    const tpl = `${dir.path}/tpl.raw`;
    await writeStripes(tpl, 8 * MiB);
    await using kit = await Nbdkit.start(`${dir.path}/repo.sock`, [
      "--filter=delay",
      "file",
      tpl,
      "rdelay=2ms",
    ]);
    const ov = `${dir.path}/ov.qed`;
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", kit.uri, "-F", "raw", ov]);
    await runOk("qemu-io", ["-c", "write -P 0xab 1M 64k", ov]);
    const expected = `${dir.path}/expected.raw`;
    await Deno.copyFile(tpl, expected);
    await runOk("qemu-io", ["-f", "raw", "-c", "write -P 0xab 1M 64k", expected]);

    const chain = await openNodeChain(ov, { readOnly: true });
    try {
      const below = chain.top.backing!;
      assert.equal(below.driver, "nbd");
      assert.equal(below.filename, kit.uri);
      assert.equal(below.readOnly, true);
      assert.equal(below.size, 8 * MiB);
      const buf = new Uint8Array(4);
      await chain.top.read(3 * MiB, buf);
      assert.deepEqual([...buf], [4, 4, 4, 4]);
    } finally {
      await chain.close();
    }

    const out = new BufferedOutput();
    const code = await runStream(
      { file: ov, speed: 0, onError: "report", output: "human" },
      out,
      { terminal: false },
    );
    assert.equal(code, 0, out.err);
    assert.match(out.out, /no longer has a backing file/);
    assert.equal(await backingOf(ov), undefined);
    await assertSameImage(ov, "qed", expected, "raw");
    await runOk("qemu-img", ["check", ov]);
  },
});

Deno.test({
  name: "`qedstream create -b nbd+unix://… -F raw` makes an overlay qemu opens and reads through",
  ignore: !present(),
  async fn() {
    await using dir = await tempDir();
    const tpl = `${dir.path}/tpl.raw`;
    await Deno.writeFile(tpl, new Uint8Array(4 * MiB).fill(0x5a));
    await using kit = await Nbdkit.start(`${dir.path}/repo.sock`, ["file", tpl]);
    const ov = `${dir.path}/ov.qed`;
    const out = new BufferedOutput();
    assert.equal(await createCommand(["-f", "qed", "-b", kit.uri, "-F", "raw", ov], out), 0);
    const info = JSON.parse(await runOk("qemu-img", ["info", "--output", "json", ov]));
    assert.equal(info["backing-filename"], kit.uri);
    assert.equal(info["backing-filename-format"], "raw");
    assert.equal(info["virtual-size"], 4 * MiB);
    await runOk("qemu-io", ["-c", "read -P 0x5a 0 4M", ov]);
    await runOk("qemu-io", ["-c", "write -P 0x11 64k 64k", "-c", "read -P 0x11 64k 64k", ov]);
    await runOk("qemu-img", ["check", ov]);
  },
});

Deno.test({
  name: "a stream from an nbdkit sparse-random template copies its data and skips its holes",
  ignore: !present(),
  async fn() {
    await using dir = await tempDir();
    await using kit = await Nbdkit.start(`${dir.path}/repo.sock`, [
      "sparse-random",
      "size=1G",
      "percent=2",
      "runlength=1048576",
      "seed=7",
    ]);
    const ov = `${dir.path}/ov.qed`;
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", kit.uri, "-F", "raw", ov]);
    const out = new BufferedOutput();
    const code = await runStream(
      { file: ov, speed: 0, onError: "report", output: "human" },
      out,
      { terminal: false },
    );
    assert.equal(code, 0, out.err);
    assert.equal(await backingOf(ov), undefined);
    await assertSameImage(ov, "qed", kit.uri, "raw");
    const map = JSON.parse(await runOk("qemu-img", ["map", "--output", "json", ov])) as {
      length: number;
      data: boolean;
    }[];
    const copied = map.filter((e) => e.data).reduce((n, e) => n + e.length, 0);
    // About 2 % of 1 GiB is data; the holes stay unallocated (no zero clusters written).
    assert.ok(copied > 5 * MiB && copied < 60 * MiB, `copied ${copied}`);
  },
});

Deno.test({
  name:
    "an nbdkit error filter failing reads: on-error=stop pauses, resuming completes a correct image",
  ignore: !present(),
  async fn() {
    await using dir = await tempDir();
    await using faulty = await Nbdkit.start(`${dir.path}/faulty.sock`, [
      "--filter=error",
      "pattern",
      "size=16M",
      "error-pread=EIO",
      "error-pread-rate=20%",
    ]);
    await using clean = await Nbdkit.start(`${dir.path}/clean.sock`, ["pattern", "size=16M"]);
    const ov = `${dir.path}/ov.qed`;
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", faulty.uri, "-F", "raw", ov]);
    const chain = await openNodeChain(ov);
    const jobs = new JobRegistry();
    const events: JobEvent[] = [];
    try {
      jobs.on((event, job) => {
        events.push(event);
        if (event.event === "BLOCK_JOB_ERROR") queueMicrotask(() => job.resume());
      });
      const job = startStream(jobs, chain.top, {
        jobId: "s0",
        onError: "stop",
        chunkSize: 512 * 1024,
        parallel: 4,
      });
      await job.concluded;
      assert.equal(job.error, undefined);
    } finally {
      await chain.close();
    }
    const errors = events.filter((e) => e.event === "BLOCK_JOB_ERROR");
    assert.ok(errors.length > 0, "the error filter failed no read");
    for (const e of errors) {
      assert.deepEqual(e.data, { device: "s0", operation: "read", action: "stop" });
    }
    assert.ok(events.some((e) => e.event === "BLOCK_JOB_COMPLETED" && e.data.error === undefined));
    assert.equal(await backingOf(ov), undefined);
    await assertSameImage(ov, "qed", clean.uri, "raw");
  },
});

Deno.test({
  name:
    "an nbdkit error filter failing reads: on-error=report fails the stream, a rerun completes it",
  ignore: !present(),
  async fn() {
    await using dir = await tempDir();
    const tpl = `${dir.path}/tpl.raw`;
    await writeStripes(tpl, 8 * MiB);
    // Every read fails while the trigger file exists.
    const trigger = `${dir.path}/fail`;
    await Deno.writeFile(trigger, new Uint8Array());
    await using kit = await Nbdkit.start(`${dir.path}/repo.sock`, [
      "--filter=error",
      "file",
      tpl,
      "error-pread=EIO",
      "error-pread-rate=100%",
      `error-pread-file=${trigger}`,
    ]);
    const ov = `${dir.path}/ov.qed`;
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", kit.uri, "-F", "raw", ov]);
    const options = { file: ov, speed: 0, onError: "report" as const, output: "human" as const };
    const failed = new BufferedOutput();
    assert.equal(await runStream(options, failed, { terminal: false }), 1);
    assert.match(failed.err, /Stream failed at .*still backed by 'nbd\+unix:/);
    assert.equal(await backingOf(ov), kit.uri);
    await Deno.remove(trigger);
    const again = new BufferedOutput();
    assert.equal(await runStream(options, again, { terminal: false }), 0, again.err);
    await assertSameImage(ov, "qed", tpl, "raw");
  },
});

Deno.test({
  name: "openNodeChain() opens a two-level chain whose bottom is an NBD export",
  ignore: !present(),
  async fn() {
    await using dir = await tempDir();
    const tpl = `${dir.path}/tpl.raw`;
    await writeStripes(tpl, 4 * MiB);
    await using kit = await Nbdkit.start(`${dir.path}/repo.sock`, ["file", tpl]);
    const mid = `${dir.path}/mid.qed`;
    const top = `${dir.path}/top.qed`;
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", kit.uri, "-F", "raw", mid]);
    await runOk("qemu-io", ["-c", "write -P 0x33 1M 64k", mid]);
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", "mid.qed", "-F", "qed", top]);
    const chain = await openNodeChain(top);
    try {
      assert.deepEqual(chain.nodes.map((n) => n.driver), ["qed", "qed", "nbd"]);
      assert.equal(chain.nodes[1]!.readOnly, true);
      const buf = new Uint8Array(2);
      await chain.top.read(1 * MiB - 1, buf);
      assert.deepEqual([...buf], [1, 0x33]);
    } finally {
      await chain.close();
    }
    const out = new BufferedOutput();
    const options = { file: top, speed: 0, onError: "report" as const, output: "human" as const };
    assert.equal(await runStream(options, out, { terminal: false }), 0, out.err);
    await assertSameImage(top, "qed", mid, "qed");
    assert.equal(await backingOf(top), undefined);
  },
});

Deno.test({
  name: "openNodeChain() with backingRoot refuses a chain that names an NBD export",
  ignore: !programsPresent("qemu-img"),
  async fn() {
    await using dir = await tempDir();
    const ov = `${dir.path}/ov.qed`;
    const uri = `nbd+unix:///tpl?socket=${dir.path}/nowhere.sock`;
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-u", "-b", uri, "-F", "raw", ov, "1M"]);
    await assert.rejects(
      openNodeChain(ov, { backingRoot: dir.path }),
      (e: Error & { code?: string }) =>
        e.code === "QED_BACKING_OUTSIDE_ROOT" && /names an NBD export/.test(e.message),
    );
    // Without the restriction the name is dialled, and a missing server is an open failure.
    await assert.rejects(openNodeChain(ov), /Could not open backing file: .*nowhere\.sock/);
  },
});
