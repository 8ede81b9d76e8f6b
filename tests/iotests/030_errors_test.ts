/**
 * iotest 030 re-expressed, part 3: I/O errors while streaming (qemu's
 * `TestEIO` and `TestENOSPC`) under every `on-error` policy, injected with
 * blkdebug exactly as qemu's test does: a config file with an
 * `[inject-error]` rule for `read_aio` in state 1 (once, not immediately,
 * at the sector of the second 512 KiB chunk) and two `[set-state]` rules
 * that flip the state between 1 and 2 on every read.
 *
 * The drive `drive0` (`test.qed`, 2 MiB) sits on `base.raw` read through
 * `raw` → `blkdebug` → `file`. The transcripts of both servers must match
 * line for line; afterwards the guest's data must be unchanged.
 */

import assert from "node:assert/strict";
import {
  assertOk,
  assertSameData,
  backingOf,
  iotest,
  qemuImg,
  qemuIo,
  type Vm,
} from "./_iotest.ts";

const LEN = 2 * 1024 * 1024;
const CHUNK = 512 * 1024;

function config(errno: number): string {
  return `[inject-error]
state = "1"
event = "read_aio"
errno = "${errno}"
immediately = "off"
once = "on"
sector = "${CHUNK / 512}"

[set-state]
state = "1"
event = "read_aio"
new_state = "2"

[set-state]
state = "2"
event = "read_aio"
new_state = "1"
`;
}

function make(errno: number) {
  return async (dir: string) => {
    await qemuImg("create", "-q", "-f", "raw", `${dir}/base.raw`, String(LEN));
    await qemuIo(`${dir}/base.raw`, "raw", `write -P 0x5a 0 ${LEN}`);
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
    );
    await qemuImg("convert", "-O", "raw", `${dir}/test.qed`, `${dir}/guest.raw`);
    await Deno.writeTextFile(`${dir}/blkdebug.conf`, config(errno));
  };
}

const BLOCKDEVS = [
  "driver=file,node-name=fb,filename=$DIR/base.raw",
  "driver=blkdebug,node-name=bd,config=$DIR/blkdebug.conf,image=fb",
  "driver=raw,node-name=braw,file=bd",
  "driver=file,node-name=ft,filename=$DIR/test.qed",
  "driver=qed,node-name=drive0,file=ft,backing=braw",
];

const EIO = { make: make(5), blockdevs: BLOCKDEVS };
const ENOSPC = { make: make(28), blockdevs: BLOCKDEVS };

/** The guest reads the same; `streamed`: the backing link is gone, else it is kept. */
function after(streamed: boolean) {
  return async (q: string, o: string) => {
    for (const d of [q, o]) {
      await assertSameData(`${d}/test.qed`, `${d}/guest.raw`);
      assert.equal(await backingOf(`${d}/test.qed`), streamed ? null : `${d}/base.raw`);
    }
    await assertSameData(`${q}/test.qed`, `${o}/test.qed`);
  };
}

/** A stream with `onError` that fails with `error`: the error event, then the job's end. */
async function failing(vm: Vm, onError: string | undefined, error: string, action: string) {
  assertOk(
    await vm.qmp("block-stream", {
      device: "drive0",
      "job-id": "drive0",
      ...(onError ? { "on-error": onError } : {}),
    }),
  );
  const event = await vm.eventWait("BLOCK_JOB_ERROR", { device: "drive0" });
  assert.equal(event.data.operation, "read");
  assert.equal(event.data.action, action);
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.error, error);
  await vm.assertNoJobs();
  return end;
}

iotest(
  "030 TestEIO.test_report: the error ends the job",
  { ...EIO, compare: after(false) },
  async (vm) => {
    const end = await failing(vm, undefined, "Input/output error", "report");
    assert.equal(end.data.offset, CHUNK);
    assert.deepEqual(vm.jobEvents("drive0"), [
      "created",
      "running",
      "BLOCK_JOB_ERROR:read:report",
      "aborting",
      "BLOCK_JOB_COMPLETED",
      "concluded",
      "null",
    ]);
  },
);

iotest(
  "030 TestEIO.test_ignore: the job goes on, then fails",
  { ...EIO, compare: after(false) },
  async (vm) => {
    const end = await failing(vm, "ignore", "Input/output error", "ignore");
    assert.equal(end.data.offset, end.data.len);
  },
);

iotest("030 TestEIO.test_stop: the job pauses, then completes after resume", {
  ...EIO,
  compare: after(true),
}, async (vm) => {
  assertOk(
    await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", "on-error": "stop" }),
  );
  const event = await vm.eventWait("BLOCK_JOB_ERROR", { device: "drive0" });
  assert.equal(event.data.action, "stop");
  await vm.eventWait("JOB_STATUS_CHANGE", { status: "paused", id: "drive0" });
  const [job] = await vm.jobs();
  assert.equal(job?.paused, true);
  assert.equal(job?.["io-status"], "failed");
  assert.equal(job?.offset, CHUNK);
  assertOk(await vm.qmp("block-job-resume", { device: "drive0" }));
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.event, "BLOCK_JOB_COMPLETED");
  assert.equal(end.data.error, undefined);
  assert.equal(end.data.offset, end.data.len);
  await vm.assertNoJobs();
});

iotest("030 TestEIO.test_enospc: an EIO under the enospc policy is reported", {
  ...EIO,
  compare: after(false),
}, async (vm) => {
  await failing(vm, "enospc", "Input/output error", "report");
});

iotest("030 TestENOSPC.test_enospc: ENOSPC stops the job with io-status nospace", {
  ...ENOSPC,
  compare: after(true),
}, async (vm) => {
  assertOk(
    await vm.qmp("block-stream", { device: "drive0", "job-id": "drive0", "on-error": "enospc" }),
  );
  const event = await vm.eventWait("BLOCK_JOB_ERROR", { device: "drive0" });
  assert.equal(event.data.action, "stop");
  await vm.eventWait("JOB_STATUS_CHANGE", { status: "paused", id: "drive0" });
  const [job] = await vm.jobs();
  assert.equal(job?.["io-status"], "nospace");
  assert.equal(job?.offset, CHUNK);
  assertOk(await vm.qmp("block-job-resume", { device: "drive0" }));
  const end = await vm.waitJobEnd("drive0");
  assert.equal(end.data.error, undefined);
  await vm.assertNoJobs();
});

iotest("030 TestENOSPC.test_report: ENOSPC under the report policy ends the job", {
  ...ENOSPC,
  compare: after(false),
}, async (vm) => {
  await failing(vm, "report", "No space left on device", "report");
});
