import assert from "node:assert/strict";
import {
  bandwidthToSpeed,
  type BlockJobEntry,
  blockJobEventOf,
  BlockJobStatus,
  BlockJobType,
  blockJobWait,
  jobInfoOf,
  type QmpConnection,
} from "../../manage/mod.ts";

function job(fields: Partial<BlockJobEntry>): BlockJobEntry {
  return {
    type: "stream",
    device: "pull-ov",
    len: 100,
    offset: 0,
    busy: true,
    paused: false,
    speed: 0,
    "io-status": "ok",
    ready: false,
    status: "running",
    "auto-finalize": true,
    "auto-dismiss": true,
    ...fields,
  };
}

Deno.test("bandwidthToSpeed() takes MiB/s or bytes/s and refuses overflow as libvirt does", () => {
  assert.equal(bandwidthToSpeed(0), 0);
  assert.equal(bandwidthToSpeed(3), 3 << 20);
  assert.equal(bandwidthToSpeed(1500, true), 1500);
  assert.throws(() => bandwidthToSpeed(2 ** 43), /bandwidth must be less than 8796093022207/);
  assert.throws(() => bandwidthToSpeed(-1), /non-negative/);
});

Deno.test("jobInfoOf() rounds MiB/s up and reports a job without length as 0 of 1", () => {
  assert.deepEqual(jobInfoOf(job({ speed: (1 << 20) + 1, offset: 5 })), {
    type: BlockJobType.PULL,
    bandwidth: 2,
    cur: 5,
    end: 100,
  });
  assert.equal(jobInfoOf(job({ speed: (1 << 20) + 1 }), { bytes: true }).bandwidth, (1 << 20) + 1);
  assert.deepEqual(jobInfoOf(job({ len: 0 })), { type: 1, bandwidth: 0, cur: 0, end: 1 });
  assert.deepEqual(jobInfoOf(job({ len: 0, status: "pending" })), {
    type: 1,
    bandwidth: 0,
    cur: 1,
    end: 1,
  });
  assert.equal(jobInfoOf(job({ type: "mirror" })).type, BlockJobType.COPY);
});

Deno.test("blockJobEventOf() maps qemu's events to completed, failed, canceled, ready", () => {
  const data = { device: "pull-ov", type: "stream", len: 9, offset: 9, speed: 0 };
  assert.equal(
    blockJobEventOf({ event: "BLOCK_JOB_COMPLETED", data })?.status,
    BlockJobStatus.COMPLETED,
  );
  assert.deepEqual(
    blockJobEventOf({
      event: "BLOCK_JOB_COMPLETED",
      data: { ...data, error: "Input/output error" },
    }),
    {
      device: "pull-ov",
      disk: "ov",
      type: BlockJobType.PULL,
      status: BlockJobStatus.FAILED,
      error: "Input/output error",
    },
  );
  assert.equal(
    blockJobEventOf({ event: "BLOCK_JOB_CANCELLED", data })?.status,
    BlockJobStatus.CANCELED,
  );
  assert.equal(
    blockJobEventOf({ event: "BLOCK_JOB_READY", data: { ...data, type: "mirror" } })?.status,
    BlockJobStatus.READY,
  );
  assert.equal(blockJobEventOf({ event: "JOB_STATUS_CHANGE", data: {} }), null);
});

Deno.test("blockJobWait() without events counts a vanished job as completed, as virsh does", async () => {
  let polls = 0;
  const progress: number[] = [];
  const conn: QmpConnection = {
    execute(command: string): Promise<unknown> {
      switch (command) {
        case "query-named-block-nodes":
          return Promise.resolve([{
            "node-name": "ov",
            drv: "qed",
            file: "/x/ov.qed",
            backing_file_depth: 0,
            ro: false,
            image: { filename: "/x/ov.qed", format: "qed", "virtual-size": 100 },
          }]);
        case "query-block":
          return Promise.resolve([]);
        case "query-block-jobs":
          polls++;
          return Promise.resolve(polls < 3 ? [job({ offset: polls * 40 })] : []);
        default:
          return Promise.reject(new Error(`unexpected ${command}`));
      }
    },
  };
  const outcome = await blockJobWait(conn, "ov", {
    interval: 1,
    onProgress: (i) => progress.push(i.cur),
  });
  assert.deepEqual(outcome, { status: BlockJobStatus.COMPLETED });
  assert.deepEqual(progress, [40, 80]);
});
