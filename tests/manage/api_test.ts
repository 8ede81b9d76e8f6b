import assert from "node:assert/strict";
import {
  blockJobAbort,
  blockJobEventOf,
  blockJobSetSpeed,
  BlockJobStatus,
  BlockJobType,
  blockJobWait,
  blockPull,
  getBlockJobInfo,
  ManageError,
  type QmpEventConnection,
  resolveDisk,
} from "../../manage/mod.ts";
import type { QmpClient } from "../../qmp/client.ts";
import { programsPresent, tempDir } from "../_tools.ts";
import {
  backingOf,
  DISK_SIZE,
  makeChain,
  sameContents,
  SERVER_KINDS,
  startServer,
} from "./_servers.ts";

const ignore = !programsPresent("qemu-img", "qemu-io", "qemu-storage-daemon");

// A QmpClient is what the management API's event-aware calls take.
const _typeCheck = (c: QmpClient): QmpEventConnection => c;

/** Polls until `check` holds (at most `ms`). */
async function until(check: () => Promise<boolean>, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("condition not reached in time");
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ManageError, String(e));
    assert.equal(e.code, code);
    assert.equal(e.message, message);
    return true;
  });
}

for (const kind of SERVER_KINDS) {
  Deno.test({
    name: `[${kind}] blockPull() throttled, blockJobSetSpeed() midway, completes`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path);
      const conn = await server.connect();
      try {
        const disk = await resolveDisk(conn, `${dir.path}/ov.qed`);
        assert.equal(disk.nodeName, "ov");
        assert.equal(disk.size, DISK_SIZE);
        assert.equal((await resolveDisk(conn, "ov")).nodeName, "ov");

        const { jobId } = await blockPull(conn, `${dir.path}/ov.qed`, { bandwidth: 1 });
        assert.equal(jobId, "pull-ov");
        const info = await getBlockJobInfo(conn, "ov");
        assert.ok(info);
        assert.equal(info.type, BlockJobType.PULL);
        assert.equal(info.bandwidth, 1);
        assert.equal(info.end, DISK_SIZE);
        assert.equal((await getBlockJobInfo(conn, "ov", { bytes: true }))?.bandwidth, 1 << 20);
        // At 1 MiB/s the job copies one 512 KiB chunk and then sleeps ~0.5 s.
        await until(async () => ((await getBlockJobInfo(conn, "ov"))?.cur ?? 0) > 0);
        const mid = await getBlockJobInfo(conn, "ov");
        assert.ok(mid && mid.cur < mid.end, "still running at 1 MiB/s");

        await blockJobSetSpeed(conn, "ov", 3 << 20, { bytes: true });
        assert.equal((await getBlockJobInfo(conn, "ov"))?.bandwidth ?? 0, 3);
        await blockJobSetSpeed(conn, `${dir.path}/ov.qed`, 0); // unlimited: wakes the job
        const t0 = Date.now();
        const outcome = await blockJobWait(conn, "ov", { timeout: 20000 });
        assert.deepEqual(outcome, { status: BlockJobStatus.COMPLETED });
        assert.ok(Date.now() - t0 < 3000, "unthrottled pull finishes quickly");
        assert.equal(await getBlockJobInfo(conn, "ov"), null);
        assert.deepEqual((await resolveDisk(conn, "ov")).backingChain, []);
      } finally {
        await conn.close();
      }
      await server.stop();
      assert.equal(await backingOf(`${dir.path}/ov.qed`), undefined);
      assert.ok(await sameContents(`${dir.path}/ov.qed`, `${dir.path}/base.raw`));
    },
  });

  Deno.test({
    name: `[${kind}] blockJobAbort() synchronous and asynchronous; CANCELED events`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path);
      const conn = await server.connect();
      try {
        // Synchronous: when abort returns, the job is gone.
        await blockPull(conn, "ov", { bandwidth: 1 });
        await blockJobAbort(conn, "ov");
        assert.deepEqual(await conn.execute("query-block-jobs"), []);
        assert.equal(await getBlockJobInfo(conn, "ov"), null);
        const cancelled = await conn.waitEvent("BLOCK_JOB_CANCELLED", { timeout: 5000 });
        assert.deepEqual(blockJobEventOf(cancelled), {
          device: "pull-ov",
          disk: "ov",
          type: BlockJobType.PULL,
          status: BlockJobStatus.CANCELED,
        });

        // Asynchronous: abort returns at once, the event follows and the job goes.
        await blockPull(conn, "ov", { bandwidth: 1 });
        await blockJobAbort(conn, "ov", { async: true });
        const again = await conn.waitEvent("BLOCK_JOB_CANCELLED", { timeout: 5000 });
        assert.equal(blockJobEventOf(again)?.status, BlockJobStatus.CANCELED);
        await until(async () => (await getBlockJobInfo(conn, "ov")) === null);

        // A cancelled pull keeps the backing file; a third pull resumes and completes.
        assert.equal((await resolveDisk(conn, "ov")).backingChain.length, 1);
        await blockPull(conn, "ov");
        assert.deepEqual(await blockJobWait(conn, "ov"), { status: BlockJobStatus.COMPLETED });
      } finally {
        await conn.close();
      }
      await server.stop();
      assert.ok(await sameContents(`${dir.path}/ov.qed`, `${dir.path}/base.raw`));
    },
  });

  Deno.test({
    name: `[${kind}] blockJobWait() aborts the job on timeout or interrupt and reports CANCELED`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path);
      const conn = await server.connect();
      try {
        await blockPull(conn, "ov", { bandwidth: 1 });
        const seen: number[] = [];
        const outcome = await blockJobWait(conn, "ov", {
          timeout: 700,
          interval: 100,
          onProgress: (i) => seen.push(i.cur),
        });
        assert.deepEqual(outcome, { status: BlockJobStatus.CANCELED });
        assert.ok(seen.length > 0);
        assert.equal(await getBlockJobInfo(conn, "ov"), null);
        assert.equal((await resolveDisk(conn, "ov")).backingChain.length, 1);

        // An interrupt (virsh's Ctrl-C) aborts too; here asynchronously.
        await blockPull(conn, "ov", { bandwidth: 1 });
        const interrupt = new AbortController();
        setTimeout(() => interrupt.abort(), 300);
        const t0 = Date.now();
        const stopped = await blockJobWait(conn, "ov", { signal: interrupt.signal, async: true });
        assert.deepEqual(stopped, { status: BlockJobStatus.CANCELED });
        assert.ok(Date.now() - t0 < 2000, "the interrupt is seen at once, not at the next poll");
        await until(async () => (await getBlockJobInfo(conn, "ov")) === null);
      } finally {
        await conn.close();
      }
    },
  });

  Deno.test({
    name: `[${kind}] errors in libvirt's words: unknown disk, no active job, busy disk, bad base`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path);
      const conn = await server.connect();
      try {
        const unknown = "disk 'vdz' not found in domain";
        await rejectsWith(getBlockJobInfo(conn, "vdz"), "VIR_ERR_INVALID_ARG", unknown);
        await rejectsWith(blockPull(conn, "vdz"), "VIR_ERR_INVALID_ARG", unknown);
        await rejectsWith(blockJobSetSpeed(conn, "vdz", 1), "VIR_ERR_INVALID_ARG", unknown);
        await rejectsWith(blockJobAbort(conn, "vdz"), "VIR_ERR_INVALID_ARG", unknown);
        const noJob = "disk ov does not have an active block job";
        await rejectsWith(blockJobAbort(conn, "ov"), "VIR_ERR_OPERATION_INVALID", noJob);
        await rejectsWith(blockJobSetSpeed(conn, "ov", 1), "VIR_ERR_OPERATION_INVALID", noJob);
        assert.equal(await getBlockJobInfo(conn, "ov"), null);
        await rejectsWith(
          blockPull(conn, "ov", { base: `${dir.path}/nope.raw` }),
          "VIR_ERR_INVALID_ARG",
          `could not find image '${dir.path}/nope.raw' in chain for '${dir.path}/ov.qed'`,
        );
        await rejectsWith(
          blockPull(conn, "ov", { bandwidth: 2 ** 44 }),
          "VIR_ERR_OVERFLOW",
          "bandwidth must be less than 8796093022207",
        );
        await blockPull(conn, "ov", { bandwidth: 1 });
        await rejectsWith(
          blockPull(conn, "ov"),
          "VIR_ERR_OPERATION_INVALID",
          "disk 'ov' already in active block job",
        );
        const e = new ManageError("VIR_ERR_INVALID_ARG", unknown);
        assert.equal(e.libvirtMessage, `invalid argument: ${unknown}`);
        await blockJobAbort(conn, "ov");
      } finally {
        await conn.close();
      }
    },
  });

  Deno.test({
    name: `[${kind}] blockPull() with a base keeps that image as the backing file`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path, { mid: true });
      await using server = await startServer(kind, dir.path);
      const conn = await server.connect();
      try {
        const disk = await resolveDisk(conn, "ov");
        assert.deepEqual(disk.backingChain, [`${dir.path}/mid.qed`, `${dir.path}/base.raw`]);
        await blockPull(conn, "ov", { base: `${dir.path}/base.raw` });
        assert.deepEqual(await blockJobWait(conn, "ov"), { status: BlockJobStatus.COMPLETED });
        assert.deepEqual((await resolveDisk(conn, "ov")).backingChain, [`${dir.path}/base.raw`]);
      } finally {
        await conn.close();
      }
      await server.stop();
      assert.equal(await backingOf(`${dir.path}/ov.qed`), `${dir.path}/base.raw`);
      assert.ok(await sameContents(`${dir.path}/ov.qed`, `${dir.path}/mid.qed`));
    },
  });
}

for (const kind of SERVER_KINDS) {
  Deno.test({
    name: `[${kind}] a pull that meets a read error ends FAILED with qemu's error text`,
    ignore,
    fn: async () => {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path, { failReadAt: 2 << 20 });
      const conn = await server.connect();
      try {
        await blockPull(conn, "ov");
        const outcome = await blockJobWait(conn, "ov", { timeout: 20000 });
        assert.deepEqual(outcome, { status: BlockJobStatus.FAILED, error: "Input/output error" });
        assert.equal((await resolveDisk(conn, "ov")).backingChain.length, 1);
      } finally {
        await conn.close();
      }
    },
  });
}
