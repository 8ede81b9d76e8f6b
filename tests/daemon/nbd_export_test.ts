import assert from "node:assert/strict";
import { parseDaemonArgs } from "../../daemon/args.ts";
import { Daemon } from "../../daemon/daemon.ts";
import { QmpClient } from "../../qmp/client.ts";
import { programsPresent, runOk, tempDir } from "../_tools.ts";
import { CLI_PATH } from "../cli/_cli.ts";
import { assertSameImage, backingOf, Nbdkit, writeStripes } from "../nbd/_nbdkit.ts";

const MiB = 1 << 20;

/** A daemon started in this process with `serve`'s command line, and a QMP client on it. */
async function serve(args: string[], qmpSocket: string) {
  const daemon = await Daemon.start(parseDaemonArgs([...args, "--qmp", `unix:${qmpSocket}`]));
  const qmp = await QmpClient.connect({ path: qmpSocket });
  return {
    daemon,
    qmp,
    async [Symbol.asyncDispose]() {
      await qmp.close().catch(() => {});
      await daemon.close();
    },
  };
}

/** Job status by id, from `query-block-jobs`. */
async function jobStatus(qmp: QmpClient, id: string): Promise<Record<string, unknown> | undefined> {
  const jobs = await qmp.execute<Record<string, unknown>[]>("query-block-jobs");
  return jobs.find((j) => j.device === id);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name: "serve exports a copy-on-read node over NBD to qemu-io, nbdinfo, nbdcopy and " +
    "qemu-img compare, coherent with a running stream",
  ignore: !programsPresent("nbdkit", "qemu-img", "qemu-io", "nbdinfo", "nbdcopy"),
  async fn() {
    await using dir = await tempDir();
    const d = dir.path;
    await writeStripes(`${d}/tpl.raw`, 16 * MiB);
    await using kit = await Nbdkit.start(`${d}/repo.sock`, [
      "--filter=delay",
      "file",
      `${d}/tpl.raw`,
      "rdelay=10ms",
    ]);
    await runOk("qemu-img", ["create", "-q", "-f", "qed", `${d}/ov.qed`, "16M"]);
    await Deno.copyFile(`${d}/tpl.raw`, `${d}/expected.raw`);
    const uri = `nbd+unix:///e0?socket=${d}/export.sock`;
    await using s = await serve([
      "--blockdev",
      `driver=nbd,node-name=tpl,server.type=unix,server.path=${kit.socket},export=tpl`,
      "--blockdev",
      `driver=file,node-name=f0,filename=${d}/ov.qed`,
      "--blockdev",
      "driver=qed,node-name=ov,file=f0,backing=tpl",
      "--blockdev",
      "driver=copy-on-read,node-name=cor,file=ov",
      "--nbd-server",
      `addr.type=unix,addr.path=${d}/export.sock`,
      "--export",
      "type=nbd,id=e0,node-name=cor,name=e0,writable=on",
    ], `${d}/qmp.sock`);
    const ov = s.daemon.graph.lookupNode("ov");
    assert.equal(ov.backing?.driver, "nbd");

    assert.equal((await runOk("nbdinfo", ["--size", uri])).trim(), String(16 * MiB));
    // A read through the copy-on-read export populates the overlay.
    assert.equal((await ov.blockStatus(10 * MiB, 65536)).kind, "unallocated");
    await runOk("qemu-io", ["-f", "raw", "-c", "read -P 0x0b 10M 64k", uri]);
    assert.equal((await ov.blockStatus(10 * MiB, 65536)).kind, "data");
    const both = async (...commands: string[]) => {
      const args = commands.flatMap((c) => ["-c", c]);
      await runOk("qemu-io", ["-f", "raw", ...args, uri]);
      await runOk("qemu-io", ["-f", "raw", ...args, `${d}/expected.raw`]);
    };
    await both("write -P 0xcc 2M 64k", "write -z 3M 128k");

    await s.qmp.execute("block-stream", { "job-id": "s0", device: "ov", speed: 8 * MiB });
    await sleep(200);
    assert.equal((await jobStatus(s.qmp, "s0"))?.status, "running");
    // Writes ahead of the stream and behind it, then every client against the model.
    await both("write -P 0xdd 12M 64k", "write -P 0xee 100k 8k", "write -z 14M 1M");
    await runOk("qemu-io", ["-f", "raw", "-c", "read -P 0xdd 12M 64k", uri]);
    assert.equal((await jobStatus(s.qmp, "s0"))?.status, "running");
    // These read everything through the copy-on-read export: the stream finds it all copied.
    await assertSameImage(uri, "raw", `${d}/expected.raw`, "raw");
    await runOk("nbdcopy", [uri, `${d}/copy.raw`]);
    await assertSameImage(`${d}/copy.raw`, "raw", `${d}/expected.raw`, "raw");

    const done = await s.qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 20_000 });
    assert.equal(done.data.error, undefined);
    assert.equal(ov.backing, null);
    await both("write -P 0x77 15M 4k");
    await assertSameImage(uri, "raw", `${d}/expected.raw`, "raw");
    await s[Symbol.asyncDispose]();
    assert.equal(await backingOf(`${d}/ov.qed`), undefined);
    await assertSameImage(`${d}/ov.qed`, "qed", `${d}/expected.raw`, "raw");
    await runOk("qemu-img", ["check", `${d}/ov.qed`]);
  },
});

Deno.test({
  name: "a repository killed mid-stream: on-error=stop pauses with BLOCK_JOB_ERROR, " +
    "block-job-resume after the restart completes a correct image",
  ignore: !programsPresent("nbdkit", "qemu-img"),
  async fn() {
    await using dir = await tempDir();
    const d = dir.path;
    await writeStripes(`${d}/tpl.raw`, 8 * MiB);
    await using kit = await Nbdkit.start(`${d}/repo.sock`, [
      "--filter=delay",
      "file",
      `${d}/tpl.raw`,
      "rdelay=5ms",
    ]);
    // The header names the repository: serve opens it as an nbd node, as qemu does.
    await runOk("qemu-img", [
      "create",
      "-q",
      "-f",
      "qed",
      "-b",
      kit.uri,
      "-F",
      "raw",
      `${d}/ov.qed`,
    ]);
    await using s = await serve([
      "--blockdev",
      `driver=file,node-name=f0,filename=${d}/ov.qed`,
      "--blockdev",
      "driver=qed,node-name=ov,file=f0",
    ], `${d}/qmp.sock`);
    const nodes = await s.qmp.execute<{ drv: string; file: string }[]>("query-named-block-nodes");
    assert.ok(nodes.some((n) => n.drv === "nbd" && n.file === kit.uri), JSON.stringify(nodes));

    await s.qmp.execute("block-stream", {
      "job-id": "s0",
      device: "ov",
      speed: 4 * MiB,
      "on-error": "stop",
    });
    await sleep(300);
    assert.equal((await jobStatus(s.qmp, "s0"))?.status, "running");
    await kit.kill();
    const error = await s.qmp.waitEvent("BLOCK_JOB_ERROR", { timeout: 10_000 });
    assert.deepEqual(error.data, { device: "s0", operation: "read", action: "stop" });
    await s.qmp.waitEvent("JOB_STATUS_CHANGE", {
      timeout: 10_000,
      filter: (e) => e.data.status === "paused",
    });
    const paused = await jobStatus(s.qmp, "s0");
    assert.equal(paused?.status, "paused");
    assert.equal(paused?.["io-status"], "failed");
    await kit.restart();
    // Resume until the client has reconnected (each early resume may meet the error again).
    for (let i = 0; i < 100; i++) {
      const job = await jobStatus(s.qmp, "s0");
      if (!job) break;
      if (job.status === "paused") await s.qmp.execute("block-job-resume", { device: "s0" });
      await sleep(100);
    }
    const done = await s.qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 10_000 });
    assert.equal(done.data.error, undefined);
    assert.equal(done.data.offset, 8 * MiB);
    await s[Symbol.asyncDispose]();
    assert.equal(await backingOf(`${d}/ov.qed`), undefined);
    await assertSameImage(`${d}/ov.qed`, "qed", `${d}/tpl.raw`, "raw");
  },
});

Deno.test({
  name: "with reconnect-delay the stream rides out a repository restart without an error",
  ignore: !programsPresent("nbdkit", "qemu-img"),
  async fn() {
    await using dir = await tempDir();
    const d = dir.path;
    await writeStripes(`${d}/tpl.raw`, 8 * MiB);
    await using kit = await Nbdkit.start(`${d}/repo.sock`, [
      "--filter=delay",
      "file",
      `${d}/tpl.raw`,
      "rdelay=5ms",
    ]);
    await runOk("qemu-img", ["create", "-q", "-f", "qed", `${d}/ov.qed`, "8M"]);
    await using s = await serve([
      "--blockdev",
      `driver=nbd,node-name=tpl,server.type=unix,server.path=${kit.socket},export=tpl,` +
      "reconnect-delay=5",
      "--blockdev",
      `driver=file,node-name=f0,filename=${d}/ov.qed`,
      "--blockdev",
      "driver=qed,node-name=ov,file=f0,backing=tpl",
    ], `${d}/qmp.sock`);
    await s.qmp.execute("block-stream", {
      "job-id": "s0",
      device: "ov",
      speed: 4 * MiB,
      "on-error": "stop",
    });
    await sleep(300);
    assert.equal((await jobStatus(s.qmp, "s0"))?.status, "running");
    await kit.kill();
    await sleep(300);
    await kit.restart();
    const done = await s.qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 20_000 });
    assert.equal(done.data.error, undefined);
    const errors = s.qmp.takeEvents().filter((e) => e.event === "BLOCK_JOB_ERROR");
    assert.deepEqual(errors, []);
    await s[Symbol.asyncDispose]();
    await assertSameImage(`${d}/ov.qed`, "qed", `${d}/tpl.raw`, "raw");
  },
});

Deno.test({
  name: "`qedstream serve` with --blockdev driver=nbd and --export type=nbd serves qemu-io, " +
    "and quits over QMP",
  ignore: !programsPresent("nbdkit", "qemu-img", "qemu-io"),
  async fn() {
    await using dir = await tempDir();
    const d = dir.path;
    await writeStripes(`${d}/tpl.raw`, 4 * MiB);
    await using kit = await Nbdkit.start(`${d}/repo.sock`, ["file", `${d}/tpl.raw`]);
    await runOk("qemu-img", ["create", "-q", "-f", "qed", `${d}/ov.qed`, "4M"]);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        CLI_PATH,
        "serve",
        "--blockdev",
        `driver=nbd,node-name=tpl,server.type=unix,server.path=${kit.socket},export=tpl`,
        "--blockdev",
        `driver=file,node-name=f0,filename=${d}/ov.qed`,
        "--blockdev",
        "driver=qed,node-name=ov,file=f0,backing=tpl",
        "--nbd-server",
        `addr.type=unix,addr.path=${d}/export.sock`,
        "--export",
        "type=nbd,id=e0,node-name=ov,name=e0,writable=on",
        "--qmp",
        `unix:${d}/qmp.sock`,
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    try {
      for (let i = 0; i < 1000; i++) {
        if (await Deno.stat(`${d}/qmp.sock`).then(() => true, () => false)) break;
        await sleep(10);
      }
      const uri = `nbd+unix:///e0?socket=${d}/export.sock`;
      await runOk("qemu-io", [
        "-f",
        "raw",
        "-c",
        "read -P 0x03 2M 1M",
        "-c",
        "write -P 9 0 4k",
        uri,
      ]);
      const qmp = await QmpClient.connect({ path: `${d}/qmp.sock` });
      await qmp.execute("quit");
      await qmp.close().catch(() => {});
      assert.equal((await child.status).code, 0, await stderr);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
      await stderr;
    }
    await runOk("qemu-io", ["-c", "read -P 9 0 4k", "-c", "read -P 0x01 4k 60k", `${d}/ov.qed`]);
  },
});
