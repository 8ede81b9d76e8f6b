/**
 * Streaming conformance: one scripted QMP session per scenario runs against
 * a real qemu-storage-daemon 7.2 and against our server (the same
 * `--blockdev` options, built by `daemon/graph_builder.ts`, with
 * `registerBlockCommands`) on identical images. After normalising
 * timestamps, versions, automatic node names and paths, the replies and
 * event sequences must be identical; where timing decides a value (the
 * progress of a throttled job, `busy`), the member is blurred and its shape
 * compared. After each session both images are compared with
 * `qemu-img compare`, byte for byte in their first 64 header bytes, and in
 * their backing file as `qemu-img info` shows it.
 */

import assert from "node:assert/strict";
import { programsPresent, tempDir } from "../_tools.ts";
import {
  assertSameImage,
  assertSameSession,
  makeChain,
  makeImages,
  runSession,
  type SessionResult,
  type Side,
  startOurSide,
  startQsdSide,
  type Step,
} from "./_stream_sessions.ts";

const ignore = !programsPresent("qemu-storage-daemon", "qemu-img", "qemu-io");

interface Scenario {
  make: (dir: string) => Promise<void>;
  blockdevs: string[];
  steps: Step[];
  images: string[];
  check?: (result: SessionResult) => void;
}

async function conform(scenario: Scenario): Promise<void> {
  await using root = await tempDir();
  const qd = `${root.path}/q`;
  const od = `${root.path}/o`;
  await Promise.all([scenario.make(qd), scenario.make(od)]);
  const sides: Side[] = [];
  try {
    sides.push(await startQsdSide(qd, scenario.blockdevs));
    sides.push(await startOurSide(od, scenario.blockdevs));
    const [qemu, ours] = await Promise.all([
      runSession(sides[0]!.path, qd, scenario.steps),
      runSession(sides[1]!.path, od, scenario.steps),
    ]);
    for (const side of sides) await side.stop();
    assertSameSession(qemu, ours);
    scenario.check?.(qemu);
    scenario.check?.(ours);
    for (const image of scenario.images) await assertSameImage(qd, od, image);
  } finally {
    for (const side of sides) await side.stop();
  }
}

const cmd = (execute: string, args?: Record<string, unknown>, id?: string): Step => ({
  send: { execute, ...(args ? { arguments: args } : {}), ...(id ? { id } : {}) },
});
const blurred = (step: Step, ...members: string[]): Step => ({ ...step, blur: members });
const CAPS = cmd("qmp_capabilities");

/** `ov` and `ov2` over `base.raw`, their backing opened from the header as in the transcripts. */
const STANDARD = [
  "driver=file,node-name=f0,filename=$DIR/ov.qed",
  "driver=qed,node-name=ov,file=f0",
  "driver=file,node-name=f2,filename=$DIR/ov2.qed",
  "driver=qed,node-name=ov2,file=f2",
];

/** The raw base read through blkdebug failing reads of sector 8192 (4 MiB). */
const faulty = (rule: string) => [
  "driver=file,node-name=bf,filename=$DIR/base.raw",
  `driver=blkdebug,node-name=bd,image=bf,inject-error.0.event=read_aio,inject-error.0.errno=${rule}`,
  "driver=raw,node-name=braw,file=bd",
  "driver=file,node-name=f0,filename=$DIR/ov.qed",
  "driver=qed,node-name=ov,file=f0,backing=braw",
];

/** The values of `member` in the raw replies to `execute`. */
function values(result: SessionResult, member: string): number[] {
  const out: number[] = [];
  for (const line of result.raw) {
    const m = line.match(new RegExp(`"${member}": (\\d+)`));
    if (m && line.startsWith('{"return": [')) out.push(Number(m[1]));
  }
  return out;
}

Deno.test({
  name: "block-stream: a full stream, then nothing to stream, as qemu-storage-daemon",
  ignore,
  fn: () =>
    conform({
      make: makeImages,
      blockdevs: STANDARD,
      images: ["ov.qed", "ov2.qed"],
      steps: [
        CAPS,
        cmd("query-named-block-nodes", { flat: true }),
        cmd("query-named-block-nodes"),
        cmd("query-block"),
        cmd("block-stream", { device: "ov" }),
        cmd("block-stream", { device: "nonexist", "job-id": "j" }, "nodev"),
        cmd("block-stream", { "job-id": "job0", device: "ov" }, "start"),
        { wait: "JOB_STATUS_CHANGE", status: "null" },
        cmd("query-block-jobs", undefined, "q3"),
        cmd("query-jobs", undefined, "q4"),
        blurred(cmd("query-named-block-nodes", { flat: true }, "after"), "actual-size"),
        cmd("block-stream", { "job-id": "job1", device: "ov" }, "again"),
      ],
    }),
});

Deno.test({
  name:
    "block-stream: throttled, refusals while running, set-speed, cancel, as qemu-storage-daemon",
  ignore,
  fn: () =>
    conform({
      make: makeImages,
      blockdevs: STANDARD,
      images: ["ov.qed", "ov2.qed"],
      steps: [
        CAPS,
        cmd("block-stream", { "job-id": "job0", device: "ov", speed: 1048576 }, "start"),
        { sleep: 700 },
        blurred(cmd("query-block-jobs", undefined, "p1"), "offset", "busy"),
        { sleep: 600 },
        blurred(cmd("query-block-jobs", undefined, "p2"), "offset", "busy"),
        blurred(cmd("query-jobs", undefined, "p3"), "current-progress"),
        cmd("block-stream", { "job-id": "job0", device: "ov" }, "dup-id"),
        cmd("block-stream", { "job-id": "job9", device: "ov" }, "busy-node"),
        cmd("block-stream", { "job-id": "job0", device: "ov2" }, "id-in-use"),
        cmd("block-stream", { "job-id": "1bad", device: "ov2" }, "bad-id"),
        cmd("block-stream", { "job-id": "a b", device: "ov2" }, "bad-id2"),
        cmd("block-stream", { "job-id": "job1", device: "ov2", speed: -1 }, "neg-speed"),
        cmd("block-job-complete", { device: "job0" }, "complete-running"),
        cmd("job-complete", { id: "job0" }, "job-complete-running"),
        cmd("job-finalize", { id: "job0" }, "finalize-running"),
        cmd("block-job-finalize", { id: "job0" }, "bfinalize-running"),
        cmd("job-dismiss", { id: "job0" }, "dismiss-running"),
        cmd("block-job-resume", { device: "job0" }, "resume-not-paused"),
        cmd("job-resume", { id: "job0" }, "job-resume-not-paused"),
        cmd("block-job-set-speed", { device: "job0", speed: -5 }, "neg-set-speed"),
        cmd("block-job-set-speed", { device: "nojob", speed: 1 }, "nf1"),
        cmd("block-job-cancel", { device: "nojob" }, "nf2"),
        cmd("block-job-pause", { device: "nojob" }, "nf3"),
        cmd("block-job-resume", { device: "nojob" }, "nf4"),
        cmd("block-job-complete", { device: "nojob" }, "nf5"),
        cmd("block-job-dismiss", { id: "nojob" }, "nf6"),
        cmd("block-job-finalize", { id: "nojob" }, "nf7"),
        cmd("job-pause", { id: "nojob" }, "nf8"),
        cmd("job-resume", { id: "nojob" }, "nf9"),
        cmd("job-cancel", { id: "nojob" }, "nf10"),
        cmd("job-complete", { id: "nojob" }, "nf11"),
        cmd("job-dismiss", { id: "nojob" }, "nf12"),
        cmd("job-finalize", { id: "nojob" }, "nf13"),
        cmd("block-job-set-speed", { device: "job0", speed: 2097152 }, "setspeed"),
        // A raise wakes the job for a chunk; cancel it once it sleeps again (a busy job answers first).
        { sleep: 120 },
        blurred(cmd("query-block-jobs", undefined, "q"), "offset", "busy"),
        blurred(cmd("block-job-cancel", { device: "job0" }, "cancel"), "offset"),
        cmd("query-block-jobs", undefined, "q-after-cancel"),
      ],
      check(result) {
        const offsets = values(result, "offset");
        assert.ok(offsets.length === 3, `three polls: ${offsets}`);
        assert.ok(offsets[0]! > 0 && offsets[1]! > offsets[0]!, `progress moves: ${offsets}`);
        const cancelled = result.raw.find((l) => l.includes("BLOCK_JOB_CANCELLED"))!;
        assert.ok(Number(cancelled.match(/"offset": (\d+)/)![1]) < 8 << 20, "cancelled mid-way");
      },
    }),
});

Deno.test({
  name: "block-job-pause / resume / forced cancel of a paused job, as qemu-storage-daemon",
  ignore,
  fn: () =>
    conform({
      make: makeImages,
      blockdevs: STANDARD,
      images: ["ov.qed", "ov2.qed"],
      steps: [
        CAPS,
        cmd("block-stream", { "job-id": "job0", device: "ov", speed: 1048576 }, 1 as never),
        { sleep: 300 },
        cmd("block-job-pause", { device: "job0" }, "pause"),
        blurred(cmd("query-block-jobs", undefined, "q-paused"), "offset"),
        blurred(cmd("query-jobs", undefined, "qj-paused"), "current-progress"),
        cmd("block-job-pause", { device: "job0" }, "pause-again"),
        cmd("job-pause", { id: "job0" }, "job-pause-again"),
        cmd("block-job-cancel", { device: "job0" }, "cancel-while-paused"),
        cmd("block-job-set-speed", { device: "job0", speed: 0 }, "setspeed-while-paused"),
        blurred(cmd("query-block-jobs", undefined, "q-still-paused"), "offset"),
        cmd("block-job-resume", { device: "job0" }, "resume"),
        { wait: "JOB_STATUS_CHANGE", status: "null" },
        cmd("block-stream", { "job-id": "job1", device: "ov2", speed: 1048576 }, "2"),
        { sleep: 300 },
        cmd("job-pause", { id: "job1" }, "jpause"),
        // A resume right before another pause would race with the job's chunk; not scripted.
        blurred(
          cmd("block-job-cancel", { device: "job1", force: true }, "cancel-force-while-paused"),
          "offset",
        ),
      ],
    }),
});

Deno.test({
  name: "block-stream: argument errors and a partial stream to a base-node, as qemu-storage-daemon",
  ignore,
  fn: () =>
    conform({
      make: makeChain,
      blockdevs: [
        "driver=file,node-name=fb,filename=$DIR/base.raw",
        "driver=raw,node-name=base,file=fb",
        "driver=file,node-name=fm,filename=$DIR/mid.qed",
        "driver=qed,node-name=mid,file=fm,backing=base",
        "driver=file,node-name=ft,filename=$DIR/top.qed",
        "driver=qed,node-name=top,file=ft,backing=mid",
      ],
      images: ["top.qed", "mid.qed"],
      steps: [
        CAPS,
        cmd("query-named-block-nodes"),
        cmd("block-stream", {
          "job-id": "j",
          device: "top",
          base: "$DIR/base.raw",
          "base-node": "base",
        }, "base+base-node"),
        cmd("block-stream", { "job-id": "j", device: "top", base: "$DIR/base.raw", bottom: "mid" }),
        cmd("block-stream", { "job-id": "j", device: "top", "base-node": "base", bottom: "mid" }),
        cmd("block-stream", {
          "job-id": "j",
          device: "nonexist",
          "base-node": "base",
          bottom: "mid",
        }),
        cmd("block-stream", { "job-id": "j", device: "nonexist", "base-node": "nonexist" }),
        cmd("block-stream", { "job-id": "j", device: "top", base: "/nonexist.img" }),
        cmd("block-stream", { "job-id": "j", device: "top", "base-node": "nonexist" }),
        cmd("block-stream", { "job-id": "j", device: "top", "base-node": "top" }),
        cmd("block-stream", { "job-id": "j", device: "mid", "base-node": "top" }),
        cmd("block-stream", { "job-id": "j", device: "top", bottom: "nonexist" }),
        cmd("block-stream", { "job-id": "j", device: "mid", bottom: "top" }),
        cmd("block-stream", { "job-id": "j", device: "top", "backing-file": "x.raw" }),
        cmd("block-stream", { "job-id": "j", device: "top", bottom: "mid", "backing-file": "x" }),
        cmd("block-stream", { "job-id": "j", device: "fb" }, "stream-protocol-node"),
        cmd("block-stream", { "job-id": "j", device: "top", "filter-node-name": "mid" }, "dup"),
        cmd("block-stream", {
          "job-id": "j1",
          device: "top",
          "base-node": "base",
          "filter-node-name": "cor0",
          speed: 1048576,
          "backing-file": "base.raw",
        }, "partial"),
        blurred(
          cmd("query-named-block-nodes", { flat: true }, "nodes"),
          "actual-size",
          "virtual-size",
        ),
        blurred(
          cmd("query-named-block-nodes", undefined, "nodes2"),
          "actual-size",
          "virtual-size",
        ),
        cmd("block-job-set-speed", { device: "j1", speed: 0 }, "unthrottle"),
        { wait: "JOB_STATUS_CHANGE", status: "null" },
        blurred(cmd("query-named-block-nodes", { flat: true }, "nodes-after"), "actual-size"),
      ],
    }),
});

Deno.test({
  name: "on-error report with an injected read error, auto-dismiss false, as qemu-storage-daemon",
  ignore,
  fn: () =>
    conform({
      make: makeImages,
      blockdevs: faulty("5,inject-error.0.sector=8192"),
      images: ["ov.qed"],
      steps: [
        CAPS,
        cmd("query-named-block-nodes"),
        cmd("block-stream", { "job-id": "job0", device: "ov", "auto-dismiss": false }, "1"),
        { wait: "JOB_STATUS_CHANGE", status: "concluded" },
        cmd("query-block-jobs", undefined, "q-concluded-with-error"),
        cmd("query-jobs", undefined, "qj-concluded-with-error"),
        cmd("job-dismiss", { id: "job0" }, "dismiss"),
      ],
    }),
});

Deno.test({
  name: "on-error stop pauses and retries after resume (injected once), as qemu-storage-daemon",
  ignore,
  fn: () =>
    conform({
      make: makeImages,
      blockdevs: faulty("5,inject-error.0.sector=8192,inject-error.0.once=on"),
      images: ["ov.qed"],
      steps: [
        CAPS,
        cmd("block-stream", { "job-id": "job0", device: "ov", "on-error": "stop" }, "1"),
        { wait: "JOB_STATUS_CHANGE", status: "paused" },
        cmd("query-block-jobs", undefined, "q-stopped"),
        cmd("query-jobs", undefined, "qj-stopped"),
        cmd("block-job-resume", { device: "job0" }, "resume"),
        { wait: "JOB_STATUS_CHANGE", status: "null" },
      ],
    }),
});

Deno.test({
  name: "on-error ignore goes on and still fails; enospc stops on ENOSPC, as qemu-storage-daemon",
  ignore,
  fn: async () => {
    await conform({
      make: makeImages,
      blockdevs: faulty("5,inject-error.0.sector=8192"),
      images: ["ov.qed"],
      steps: [
        CAPS,
        cmd("block-stream", { "job-id": "job0", device: "ov", "on-error": "ignore" }, "1"),
        { wait: "JOB_STATUS_CHANGE", status: "null" },
      ],
    });
    await conform({
      make: makeImages,
      blockdevs: faulty("28,inject-error.0.sector=8192,inject-error.0.once=on"),
      images: ["ov.qed"],
      steps: [
        CAPS,
        cmd("block-stream", { "job-id": "job0", device: "ov", "on-error": "enospc" }, "1"),
        { wait: "JOB_STATUS_CHANGE", status: "paused" },
        cmd("query-block-jobs", undefined, "q-nospace"),
        cmd("job-cancel", { id: "job0" }, "cancel"),
      ],
    });
  },
});

Deno.test({
  name: "auto-finalize false and auto-dismiss false: pending, finalize, dismiss, refusals, as qsd",
  ignore,
  fn: () =>
    conform({
      make: makeImages,
      blockdevs: STANDARD,
      images: ["ov.qed", "ov2.qed"],
      steps: [
        CAPS,
        cmd("block-stream", {
          "job-id": "job0",
          device: "ov",
          "auto-finalize": false,
          "auto-dismiss": false,
        }, "1"),
        { wait: "BLOCK_JOB_PENDING" },
        cmd("query-block-jobs", undefined, "q-pending"),
        cmd("query-jobs", undefined, "qj-pending"),
        cmd("block-job-pause", { device: "job0" }, "pause-pending"),
        cmd("job-dismiss", { id: "job0" }, "dismiss-pending"),
        cmd("job-complete", { id: "job0" }, "complete-pending"),
        cmd("block-job-set-speed", { device: "job0", speed: 1 }, "speed-pending"),
        cmd("job-finalize", { id: "job0" }, "finalize"),
        cmd("query-block-jobs", undefined, "q-concluded"),
        cmd("block-job-pause", { device: "job0" }, "pause-concluded"),
        cmd("block-job-set-speed", { device: "job0", speed: 1 }, "speed-concluded"),
        cmd("block-job-cancel", { device: "job0" }, "cancel-concluded"),
        cmd("job-finalize", { id: "job0" }, "finalize-concluded"),
        cmd("block-stream", { "job-id": "job0", device: "ov2" }, "id-of-concluded"),
        cmd("block-job-dismiss", { id: "job0" }, "dismiss"),
        cmd("query-block-jobs", undefined, "q-after"),
        cmd("job-dismiss", { id: "job0" }, "dismiss-again"),
        cmd("block-job-dismiss", { id: "job0" }, "bdismiss-again"),
        cmd("block-stream", { "job-id": "job1", device: "ov", "auto-finalize": false }, "trivial"),
        cmd("job-cancel", { id: "job1" }, "cancel-pending"),
        cmd("block-stream", {
          "job-id": "job2",
          device: "ov2",
          "auto-finalize": false,
          speed: 1048576,
        }, "2"),
        cmd("block-job-set-speed", { device: "job2", speed: 0 }, "unthrottle"),
        { wait: "BLOCK_JOB_PENDING" },
        cmd("block-job-cancel", { device: "job2" }, "cancel-pending2"),
      ],
    }),
});
