/**
 * iotest 030 re-expressed, part 1: streaming on one drive of a three-image
 * chain (qemu's `TestSingleDrive`), on qemu-storage-daemon and on
 * `qedstream serve` started with the same command line.
 *
 * The chain: `base.raw` (2 MiB, `0x01` in its first sector) ← `mid.qed`
 * (`0x01` in a sector at 512 KiB) ← `test.qed`, the drive (`drive0`); the
 * nodes are `base`, `mid` and `drive0` over file nodes. What the guest reads
 * is saved before every scenario and must read the same after it.
 */

import assert from "node:assert/strict";
import {
  assertError,
  assertOk,
  assertSameData,
  backingOf,
  ioMap,
  iotest,
  qemuImg,
  qemuIo,
} from "./_iotest.ts";

const LEN = "2M";

async function makeChain(dir: string): Promise<void> {
  await qemuImg("create", "-q", "-f", "raw", `${dir}/base.raw`, LEN);
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
  await qemuImg(
    "create",
    "-q",
    "-f",
    "qed",
    "-b",
    `${dir}/mid.qed`,
    "-F",
    "qed",
    `${dir}/test.qed`,
  );
  await qemuIo(`${dir}/base.raw`, "raw", "write -P 0x1 0 512");
  await qemuIo(`${dir}/mid.qed`, "qed", "write -P 0x1 524288 512");
  // The guest's view before the scenario.
  await qemuImg("convert", "-O", "raw", `${dir}/test.qed`, `${dir}/guest.raw`);
}

const CHAIN = [
  "driver=file,node-name=fb,filename=$DIR/base.raw",
  "driver=raw,node-name=base,file=fb",
  "driver=file,node-name=fm,filename=$DIR/mid.qed",
  "driver=qed,node-name=mid,file=fm,backing=base",
  "driver=file,node-name=ft,filename=$DIR/test.qed",
  "driver=qed,node-name=drive0,file=ft,backing=mid",
];

const single = { make: makeChain, blockdevs: CHAIN };

/** The guest still reads what it read before (checked once the server has stopped). */
async function guestUnchanged(dir: string): Promise<void> {
  await assertSameData(`${dir}/test.qed`, `${dir}/guest.raw`);
}

iotest("030 TestSingleDrive.test_stream: a full stream empties the chain", {
  ...single,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await guestUnchanged(d);
      assert.equal(await ioMap(`${d}/test.qed`), await ioMap(`${d}/base.raw`, "raw"));
      assert.equal(await backingOf(`${d}/test.qed`), null);
    }
  },
}, async (vm) => {
  await vm.assertNoJobs();
  assertOk(await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0" }));
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.error, undefined);
  assert.equal(end.data.offset, end.data.len);
  await vm.assertNoJobs();
  assert.deepEqual(vm.jobEvents("drive0"), [
    "created",
    "running",
    "waiting",
    "pending",
    "BLOCK_JOB_COMPLETED",
    "concluded",
    "null",
  ]);
});

iotest("030 TestSingleDrive.test_stream_intermediate: streaming into a node inside the chain", {
  ...single,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await guestUnchanged(d);
      assert.equal(await ioMap(`${d}/mid.qed`), await ioMap(`${d}/base.raw`, "raw"));
      assert.equal(await backingOf(`${d}/mid.qed`), null);
      assert.equal(await backingOf(`${d}/test.qed`), `${d}/mid.qed`);
    }
  },
}, async (vm) => {
  assertOk(await vm.qmp("block-stream", { device: "mid", "job-id": "stream-mid" }));
  const end = await vm.waitJobEnd("stream-mid");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.error, undefined);
  await vm.assertNoJobs();
});

iotest("030 TestSingleDrive.test_stream_pause: a paused stream makes no progress", {
  ...single,
  sameTranscript: false,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await guestUnchanged(d);
      assert.equal(await backingOf(`${d}/test.qed`), null);
    }
  },
}, async (vm) => {
  // Throttled to a crawl so that the job is still running when it is paused.
  assertOk(await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", speed: 1 }));
  assertOk(await vm.qmp("block-job-pause", { device: "drive0" }));
  await vm.eventWait("JOB_STATUS_CHANGE", { status: "paused", id: "drive0" });
  const [before] = await vm.jobs();
  assert.equal(before?.paused, true);
  assert.equal(before?.status, "paused");
  await new Promise((r) => setTimeout(r, 200));
  const [after] = await vm.jobs();
  assert.equal(after?.offset, before?.offset, "a paused job made progress");
  assertOk(await vm.qmp("block-job-set-speed", { device: "drive0", speed: 0 }));
  assertOk(await vm.qmp("block-job-resume", { device: "drive0" }));
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.offset, end.data.len);
  await vm.assertNoJobs();
});

iotest("030 TestSingleDrive.test_stream_no_op: nothing to stream above the base", {
  make: async (dir) => {
    await makeChain(dir);
    await Deno.writeTextFile(`${dir}/map.before`, await ioMap(`${dir}/test.qed`));
  },
  blockdevs: CHAIN,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      assert.equal(await ioMap(`${d}/test.qed`), await Deno.readTextFile(`${d}/map.before`));
      assert.equal(await backingOf(`${d}/test.qed`), `${d}/mid.qed`);
      await guestUnchanged(d);
    }
  },
}, async (vm) => {
  assertOk(
    await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", base: "$DIR/mid.qed" }),
  );
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  await vm.assertNoJobs();
});

iotest("030 TestSingleDrive.test_stream_partial: streaming down to a base", {
  ...single,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await guestUnchanged(d);
      assert.equal(await ioMap(`${d}/test.qed`), await ioMap(`${d}/mid.qed`));
      assert.equal(await backingOf(`${d}/test.qed`), `${d}/base.raw`);
    }
  },
}, async (vm) => {
  assertOk(
    await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", base: "$DIR/base.raw" }),
  );
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  await vm.assertNoJobs();
});

iotest("030 TestSingleDrive: refused streams (no device, no job id, read-only node)", {
  make: async (dir) => {
    await makeChain(dir);
    await qemuImg("create", "-q", "-f", "qed", `${dir}/ro-top.qed`, LEN);
  },
  blockdevs: CHAIN,
}, async (vm) => {
  assertError(
    await vm.qmp("block-stream", { device: "nonexistent" }),
    "Cannot find device='nonexistent' nor node-name='nonexistent'",
  );
  assertError(await vm.qmp("block-stream", { device: "mid" }), "Invalid job ID ''");
  assertOk(
    await vm.qmp("blockdev-add", {
      "node-name": "ro-top",
      driver: "qed",
      "read-only": true,
      file: { driver: "file", filename: "$DIR/ro-top.qed", "read-only": true },
      backing: "mid",
    }),
  );
  assertError(
    await vm.qmp("block-stream", { "job-id": "stream", device: "ro-top", "base-node": "base" }),
    "Block node is read-only",
  );
  assertOk(await vm.qmp("blockdev-del", { "node-name": "ro-top" }));
  assertError(
    await vm.qmp("blockdev-del", { "node-name": "ro-top" }),
    "Failed to find node with node-name='ro-top'",
  );
  await vm.assertNoJobs();
});
