/**
 * `qedstream serve` as a process: started with qemu-storage-daemon's
 * command line, driven over QMP, stopped by `quit` and by signals.
 */
import assert from "node:assert/strict";
import { QmpClient } from "../../qmp/client.ts";
import { programsPresent, run, runOk, tempDir } from "../_tools.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

async function waitForSocket(path: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await Deno.stat(path)).isSocket) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${path} never appeared`);
}

async function overlay(dir: string): Promise<string> {
  const base = new Uint8Array(8 << 20);
  crypto.getRandomValues(base.subarray(0, 65536));
  base.fill(0x33, 4 << 20);
  await Deno.writeFile(`${dir}/base.raw`, base);
  await runOk("qemu-img", [
    "create",
    "-q",
    "-f",
    "qed",
    "-b",
    "base.raw",
    "-F",
    "raw",
    `${dir}/ov.qed`,
  ]);
  return `${dir}/ov.qed`;
}

function serve(dir: string, ...extra: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CLI,
      "serve",
      "--blockdev",
      `driver=file,node-name=f0,filename=${dir}/ov.qed`,
      "--blockdev",
      "driver=qed,node-name=ov,file=f0",
      "--chardev",
      `socket,id=m0,path=${dir}/qmp.sock,server=on,wait=off`,
      "--monitor",
      "chardev=m0",
      ...extra,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

Deno.test({
  name: "serve streams over QMP and shuts down cleanly on quit",
  ignore: !programsPresent("qemu-img"),
  async fn() {
    await using dir = await tempDir();
    const image = await overlay(dir.path);
    const child = serve(dir.path);
    await waitForSocket(`${dir.path}/qmp.sock`);
    assert.equal((await Deno.stat(`${dir.path}/qmp.sock`)).mode! & 0o777, 0o600);
    const client = await QmpClient.connect({ path: `${dir.path}/qmp.sock` });
    await client.execute("block-stream", { "job-id": "s0", device: "ov" });
    const done = await client.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 20_000 });
    assert.equal(done.data?.offset, 8 << 20);
    await client.execute("quit");
    client.close();
    const status = await child.output();
    assert.equal(status.code, 0, new TextDecoder().decode(status.stderr));
    assert.doesNotMatch(await runOk("qemu-img", ["info", image]), /backing file/);
    await runOk("qemu-img", ["check", image]);
    await runOk("qemu-img", ["compare", "-f", "qed", "-F", "raw", image, `${dir.path}/base.raw`]);
  },
});

Deno.test({
  name: "serve cancels a running stream on SIGTERM and leaves the image consistent",
  ignore: !programsPresent("qemu-img"),
  async fn() {
    await using dir = await tempDir();
    const image = await overlay(dir.path);
    const child = serve(dir.path);
    await waitForSocket(`${dir.path}/qmp.sock`);
    const client = await QmpClient.connect({ path: `${dir.path}/qmp.sock` });
    await client.execute("block-stream", { "job-id": "s0", device: "ov", speed: 1 << 20 });
    await client.waitEvent("JOB_STATUS_CHANGE", {
      timeout: 10_000,
      filter: (e) => e.data?.status === "running",
    });
    child.kill("SIGTERM");
    const cancelled = await client.waitEvent("BLOCK_JOB_CANCELLED", { timeout: 10_000 });
    assert.ok(Number(cancelled.data?.offset) < 8 << 20);
    client.close();
    assert.equal((await child.output()).code, 0);
    // Consistent, still backed, need-check clear, and a later stream finishes it.
    assert.match(await runOk("qemu-img", ["info", image]), /backing file: base\.raw/);
    await runOk("qemu-img", ["check", image]);
    await runOk("qemu-img", ["compare", image, `${dir.path}/base.raw`]);
    const features = (await Deno.readFile(image))[16]!;
    assert.equal(features & 0x02, 0, "need-check bit is clear");
    const again = await run(Deno.execPath(), ["run", "-A", CLI, "stream", image]);
    assert.equal(again.code, 0, again.stderr);
    await runOk("qemu-img", ["compare", "-f", "qed", "-F", "raw", image, `${dir.path}/base.raw`]);
  },
});

Deno.test("serve refuses bad options in one line, before opening anything", async () => {
  const bad = await run(Deno.execPath(), [
    "run",
    "-A",
    CLI,
    "serve",
    "--blockdev",
    "driver=nosuch,node-name=x",
  ]);
  assert.equal(bad.code, 1);
  assert.equal(
    bad.stderr,
    "qedstream: --blockdev driver=nosuch,node-name=x: Parameter 'driver' does not accept value 'nosuch'\n",
  );
  const remote = await run(Deno.execPath(), ["run", "-A", CLI, "serve", "--qmp", "tcp:0.0.0.0:0"]);
  assert.equal(remote.code, 1);
  assert.match(
    remote.stderr,
    /^qedstream: QMP monitor on tcp:0\.0\.0\.0:0 would accept remote clients; listen on loopback or add --allow-remote\n$/,
  );
});
