/**
 * iotest 030 re-expressed, part 4: a backing file smaller than the overlay
 * (`TestSmallerBackingFile`), stopping a stream (`TestStreamStop`) and
 * changing its speed (`TestSetSpeed`).
 */

import assert from "node:assert/strict";
import {
  assertError,
  assertOk,
  assertSameData,
  backingOf,
  iotest,
  qemuImg,
  qemuIo,
} from "./_iotest.ts";

async function makeOverlay(dir: string, baseLen: string, len: string): Promise<void> {
  await qemuImg("create", "-q", "-f", "raw", `${dir}/base.raw`, baseLen);
  await qemuIo(`${dir}/base.raw`, "raw", `write -P 0x1 0 ${baseLen}`);
  await qemuImg(
    "create",
    "-q",
    "-f",
    "qed",
    "-b",
    `${dir}/base.raw`,
    "-F",
    "raw",
    `${dir}/test.qed`,
    len,
  );
  await qemuImg("convert", "-O", "raw", `${dir}/test.qed`, `${dir}/guest.raw`);
}

const BLOCKDEVS = [
  "driver=file,node-name=fb,filename=$DIR/base.raw",
  "driver=raw,node-name=base,file=fb",
  "driver=file,node-name=ft,filename=$DIR/test.qed",
  "driver=qed,node-name=drive0,file=ft,backing=base",
];

iotest("030 TestSmallerBackingFile.test_stream: a 1 MiB backing file under a 2 MiB drive", {
  make: (dir) => makeOverlay(dir, "1M", "2M"),
  blockdevs: BLOCKDEVS,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await assertSameData(`${d}/test.qed`, `${d}/guest.raw`);
      assert.equal(await backingOf(`${d}/test.qed`), null);
    }
    await assertSameData(`${q}/test.qed`, `${o}/test.qed`);
  },
}, async (vm) => {
  assertOk(await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0" }));
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.error, undefined);
  assert.equal(end.data.len, 2 * 1024 * 1024);
  await vm.assertNoJobs();
});

const standard = {
  make: (dir: string) => makeOverlay(dir, "4M", "4M"),
  blockdevs: BLOCKDEVS,
};

iotest("030 TestStreamStop.test_stream_stop: a cancelled stream keeps the backing file", {
  ...standard,
  sameTranscript: false,
  compare: async (q, o) => {
    for (const d of [q, o]) {
      await assertSameData(`${d}/test.qed`, `${d}/guest.raw`);
      assert.equal(await backingOf(`${d}/test.qed`), `${d}/base.raw`);
    }
  },
}, async (vm) => {
  assertOk(await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", speed: 1 }));
  const [job] = await vm.jobs();
  assert.equal(job?.device, "drive0");
  assert.equal(job?.status, "running");
  assertOk(await vm.qmp("block-job-cancel", { device: "drive0" }));
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.event, "BLOCK_JOB_CANCELLED");
  assert.ok(end.data.offset < end.data.len);
  assert.deepEqual(vm.jobEvents("drive0"), [
    "created",
    "running",
    "aborting",
    "BLOCK_JOB_CANCELLED",
    "concluded",
    "null",
  ]);
  await vm.assertNoJobs();
});

// Not compared line by line: how far the job got when the speed changed is timing.
iotest("030 TestSetSpeed.test_set_speed: the speed shows in query-block-jobs", {
  ...standard,
  sameTranscript: false,
}, async (vm) => {
  assertOk(await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", speed: 1 }));
  assert.equal((await vm.jobs())[0]?.speed, 1);
  assertOk(await vm.qmp("block-job-set-speed", { device: "drive0", speed: 8 * 1024 * 1024 }));
  assert.equal((await vm.jobs())[0]?.speed, 8 * 1024 * 1024);
  assertOk(await vm.qmp("block-job-set-speed", { device: "drive0", speed: 1 }));
  assertOk(await vm.qmp("block-job-cancel", { device: "drive0" }));
  assert.equal((await vm.waitJobEnd("drive0")).event, "BLOCK_JOB_CANCELLED");
  assertOk(
    await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", speed: 4 * 1024 * 1024 }),
  );
  assert.equal((await vm.jobs())[0]?.speed, 4 * 1024 * 1024);
  assertOk(await vm.qmp("block-job-set-speed", { device: "drive0", speed: 1 }));
  assertOk(await vm.qmp("block-job-cancel", { device: "drive0" }));
  assert.equal((await vm.waitJobEnd("drive0")).event, "BLOCK_JOB_CANCELLED");
  await vm.assertNoJobs();
});

// Not compared line by line: whether a cancel is answered before or after the job's events
// depends on whether the job is between chunks at that moment.
iotest("030 TestSetSpeed.test_set_speed_invalid: a negative speed is refused", {
  ...standard,
  sameTranscript: false,
}, async (vm) => {
  const negative = "Parameter 'speed' expects a non-negative value";
  assertError(
    await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", speed: -1 }),
    negative,
  );
  await vm.assertNoJobs();
  assertOk(await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", speed: 1 }));
  assertError(await vm.qmp("block-job-set-speed", { device: "drive0", speed: -1 }), negative);
  assertOk(await vm.qmp("block-job-cancel", { device: "drive0" }));
  assert.equal((await vm.waitJobEnd("drive0")).event, "BLOCK_JOB_CANCELLED");
  await vm.assertNoJobs();
});
