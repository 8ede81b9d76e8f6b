/**
 * `block-commit`, `blockdev-add` / `blockdev-del` and blkdebug's full
 * syntax on qemu-storage-daemon and on `qedstream serve` with the same
 * command line: qemu's error texts, the job's events, and the images
 * afterwards (the guest reads the same; the backing link moves to the base;
 * writes made during an active commit reach the base).
 *
 * The chain: `base.raw` (4 MiB, `0xaa` in [0, 1M)) ← `mid.qed` (`0xbb` in
 * [1M, 2M)) ← `top.qed` (`0xcc` in [2M, 2.5M)); nodes `base`, `mid`, `top`.
 */

import assert from "node:assert/strict";
import { run } from "../_tools.ts";
import {
  assertError,
  assertOk,
  assertSameData,
  backingOf,
  iotest,
  qemuImg,
  qemuIo,
} from "./_iotest.ts";

async function makeChain(dir: string): Promise<void> {
  await qemuImg("create", "-q", "-f", "raw", `${dir}/base.raw`, "4M");
  await qemuIo(`${dir}/base.raw`, "raw", "write -P 0xaa 0 1M");
  await qemuImg(
    "create",
    "-q",
    "-f",
    "qed",
    "-b",
    `${dir}/base.raw`,
    "-F",
    "raw",
    `${dir}/mid.qed`,
  );
  await qemuIo(`${dir}/mid.qed`, "qed", "write -P 0xbb 1M 1M");
  await qemuImg("create", "-q", "-f", "qed", "-b", `${dir}/mid.qed`, "-F", "qed", `${dir}/top.qed`);
  await qemuIo(`${dir}/top.qed`, "qed", "write -P 0xcc 2M 512k");
  await qemuImg("convert", "-O", "raw", `${dir}/top.qed`, `${dir}/guest.raw`);
}

const CHAIN = [
  "driver=file,node-name=fb,filename=$DIR/base.raw",
  "driver=raw,node-name=base,file=fb",
  "driver=file,node-name=fm,filename=$DIR/mid.qed",
  "driver=qed,node-name=mid,file=fm,backing=base",
  "driver=file,node-name=ft,filename=$DIR/top.qed",
  "driver=qed,node-name=top,file=ft,backing=mid",
];

iotest("block-commit: an intermediate commit merges mid into base and drops it", {
  make: makeChain,
  blockdevs: CHAIN,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await assertSameData(`${d}/top.qed`, `${d}/guest.raw`);
      assert.equal(await backingOf(`${d}/top.qed`), `${d}/base.raw`);
    }
    await assertSameData(`${q}/base.raw`, `${o}/base.raw`);
    const header = async (d: string) => (await Deno.readFile(`${d}/top.qed`)).subarray(0, 64);
    assert.deepEqual([...await header(o)], [...await header(q)]);
  },
}, async (vm) => {
  assertOk(await vm.qmp("block-commit", { device: "top", "job-id": "c", "top-node": "mid" }));
  const end = await vm.waitJobEnd("c");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.type, "commit");
  assert.equal(end.data.offset, end.data.len);
  assert.deepEqual(vm.jobEvents("c"), [
    "created",
    "running",
    "waiting",
    "pending",
    "BLOCK_JOB_COMPLETED",
    "concluded",
    "null",
  ]);
  await vm.assertNoJobs();
});

iotest("block-commit: qemu's errors for bad arguments, busy nodes and blockdev-del", {
  make: makeChain,
  blockdevs: CHAIN,
}, async (vm) => {
  const commit = (args: Record<string, unknown>) =>
    vm.qmp("block-commit", { device: "top", ...args });
  assertError(await commit({}), "Invalid job ID ''");
  assertError(
    await commit({ "top-node": "mid", top: "x" }),
    "'top-node' and 'top' are mutually exclusive",
  );
  assertError(
    await commit({ "base-node": "base", base: "x" }),
    "'base-node' and 'base' are mutually exclusive",
  );
  assertError(await commit({ "top-node": "base" }), "cannot commit an image into itself");
  assertError(
    await commit({ "top-node": "mid", "base-node": "top" }),
    "'top' is not in this backing file chain",
  );
  assertError(await commit({ "top-node": "nonex" }), "Cannot find device='' nor node-name='nonex'");
  assertError(await commit({ top: "nonex" }), "Top image file nonex not found");
  assertError(await commit({ base: "nonex" }), "Can't find 'nonex' in the backing chain");
  assertError(
    await vm.qmp("block-commit", { device: "nonex" }),
    "Device 'nonex' not found",
    "DeviceNotFound",
  );
  assertError(
    await vm.qmp("block-commit", { device: "mid", "job-id": "j" }),
    "Need a root block node",
  );
  assertError(
    await commit({ "job-id": "j", speed: -1 }),
    "Parameter 'speed' expects a non-negative value",
  );
  // A crawling active commit holds the chain (its first iteration copies all there is).
  assertOk(await commit({ "job-id": "a", speed: 1, "base-node": "base" }));
  await vm.pollJob("a", (j) => j.len > 0 && j.offset === j.len);
  assertError(await commit({ "job-id": "k" }), "Need a root block node");
  assertError(
    await vm.qmp("block-stream", { device: "top", "job-id": "s" }),
    "Node 'top' is busy: block device is in use by block job: commit",
  );
  assertError(await vm.qmp("blockdev-del", { "node-name": "base" }), "Node base is in use");
  assertError(
    await vm.qmp("blockdev-del", { "node-name": "top" }),
    "Node 'top' is busy: block device is in use by block job: commit",
  );
  assertError(await vm.qmp("blockdev-del", { "node-name": "fb" }), "Block device fb is in use");
  assertError(
    await vm.qmp("blockdev-del", { "node-name": "nonex" }),
    "Failed to find node with node-name='nonex'",
  );
  assertError(
    await vm.qmp("blockdev-add", { driver: "file", "node-name": "mid", filename: "$DIR/x" }),
    "Duplicate nodes with node-name='mid'",
  );
  assertError(
    await vm.qmp("block-job-complete", { device: "a" }),
    "Job 'a' in state 'running' cannot accept command verb 'complete'",
  );
  assertOk(await vm.qmp("block-job-cancel", { device: "a" }));
  assert.equal((await vm.waitJobEnd("a")).event, "BLOCK_JOB_CANCELLED");
  await vm.assertNoJobs();
});

iotest("block-commit: an active commit is ready, pauses to standby, completes", {
  make: makeChain,
  blockdevs: CHAIN,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      // The base now holds everything the guest saw.
      await assertSameData(`${d}/base.raw`, `${d}/guest.raw`);
    }
  },
}, async (vm) => {
  assertOk(
    await vm.qmp("block-commit", { device: "top", "job-id": "a", "base-node": "base", speed: 1 }),
  );
  assertOk(await vm.qmp("block-job-set-speed", { device: "a", speed: 0 }));
  const ready = await vm.eventWait("BLOCK_JOB_READY", { device: "a" });
  assert.equal(ready.data.offset, ready.data.len);
  const [job] = await vm.jobs();
  assert.equal(job?.status, "ready");
  assert.equal(job?.ready, true);
  assertOk(await vm.qmp("block-job-pause", { device: "a" }));
  assert.equal((await vm.jobs())[0]?.status, "standby");
  assertOk(await vm.qmp("block-job-resume", { device: "a" }));
  assert.equal((await vm.jobs())[0]?.status, "ready");
  assertOk(await vm.qmp("block-job-complete", { device: "a" }));
  const end = await vm.waitJobEnd("a");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.error, undefined);
  await vm.assertNoJobs();
});

iotest("block-commit: writes during an active commit reach the base", {
  make: makeChain,
  blockdevs: CHAIN,
  args: [
    "--nbd-server",
    "addr.type=unix,addr.path=$DIR/nbd.sock",
    "--export",
    "type=nbd,id=e0,node-name=top,name=top,writable=on",
  ],
  sameTranscript: false,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await qemuIo(`${d}/base.raw`, "raw", "read -P 0xdd 0 64k", "read -P 0xee 3M 128k");
      await qemuIo(`${d}/base.raw`, "raw", "read -P 0xbb 1M 1M", "read -P 0xcc 2M 512k");
    }
    await assertSameData(`${q}/base.raw`, `${o}/base.raw`);
  },
}, async (vm) => {
  const uri = `nbd+unix:///top?socket=${vm.dir}/nbd.sock`;
  const write = async (cmd: string) => {
    const r = await run("qemu-io", ["-f", "raw", "-c", cmd, uri]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.doesNotMatch(r.stdout + r.stderr, /error|failed/i);
  };
  assertOk(await vm.qmp("block-commit", { device: "top", "job-id": "a", "base-node": "base" }));
  await write("write -P 0xdd 0 64k");
  await vm.eventWait("BLOCK_JOB_READY", { device: "a" });
  await write("write -P 0xee 3M 128k");
  assertOk(await vm.qmp("block-job-complete", { device: "a" }));
  const end = await vm.waitJobEnd("a");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.error, undefined);
});

iotest("blkdebug: inline inject-error on writes fails a commit with a write error", {
  make: makeChain,
  blockdevs: [
    "driver=file,node-name=fb,filename=$DIR/base.raw",
    "driver=blkdebug,node-name=bd,image=fb,inject-error.0.event=write_aio,inject-error.0.iotype=write,inject-error.0.errno=28,inject-error.0.once=on",
    "driver=raw,node-name=base,file=bd",
    "driver=file,node-name=fm,filename=$DIR/mid.qed",
    "driver=qed,node-name=mid,file=fm,backing=base",
    "driver=file,node-name=ft,filename=$DIR/top.qed",
    "driver=qed,node-name=top,file=ft,backing=mid",
  ],
}, async (vm) => {
  assertOk(
    await vm.qmp("block-commit", {
      device: "top",
      "job-id": "c",
      "top-node": "mid",
      "on-error": "report",
    }),
  );
  const error = await vm.eventWait("BLOCK_JOB_ERROR", { device: "c" });
  assert.equal(error.data.operation, "write");
  assert.equal(error.data.action, "report");
  const end = await vm.waitJobEnd("c");
  assert.equal(end.data.error, "No space left on device");
  await vm.assertNoJobs();
});

iotest("blockdev-add: backing=null overrides the header, backing=NODE names the base", {
  make: async (dir) => {
    await makeChain(dir);
    await qemuImg("create", "-q", "-f", "qed", "-b", `${dir}/mid.qed`, "-F", "qed", `${dir}/x.qed`);
  },
  blockdevs: CHAIN,
  compare: async (q, o) => {
    for (const d of [q, o]) assert.equal(await backingOf(`${d}/x.qed`), null);
    await assertSameData(`${q}/x.qed`, `${o}/x.qed`);
  },
}, async (vm) => {
  const file = { driver: "file", filename: "$DIR/x.qed" };
  assertOk(await vm.qmp("blockdev-add", { driver: "qed", "node-name": "x", file, backing: null }));
  // Nothing below it: the whole job runs before the reply.
  assertOk(await vm.qmp("block-stream", { device: "x", "job-id": "s" }));
  assert.deepEqual(vm.jobEvents("s"), [
    "created",
    "running",
    "waiting",
    "pending",
    "BLOCK_JOB_COMPLETED",
    "concluded",
    "null",
  ]);
  assertOk(await vm.qmp("blockdev-del", { "node-name": "x" }));
  assertOk(
    await vm.qmp("blockdev-add", { driver: "qed", "node-name": "x", file, backing: "base" }),
  );
  assertOk(await vm.qmp("block-stream", { device: "x", "job-id": "s2" }));
  assert.equal((await vm.waitJobEnd("s2")).event, "BLOCK_JOB_COMPLETED");
  assertOk(await vm.qmp("blockdev-del", { "node-name": "x" }));
  await vm.assertNoJobs();
});
