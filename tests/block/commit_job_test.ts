import assert from "node:assert/strict";
import fc from "fast-check";
import { BlockDevice } from "../../block/device.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import { startCommit } from "../../block/commit_job.ts";
import { BlockGraph } from "../../block/graph.ts";
import { startStream } from "../../block/stream_job.ts";
import type { BlockNode } from "../../block/node.ts";
import { qedNode } from "../../block/qed_node.ts";
import { rawNode } from "../../block/raw_node.ts";
import { MemoryStorage } from "../../io/memory_storage.ts";
import { QedImage } from "../../qed/image.ts";
import { RawImage } from "../../qed/raw_image.ts";
import { seeds } from "../_tools.ts";

const SIZE = 2 * 1024 * 1024;

/** base (raw, 0x11 in the first 256 KiB) ← mid (0x22 at 512 KiB) ← top (0x33 at 1 MiB). */
async function chain() {
  const baseBytes = new Uint8Array(SIZE);
  baseBytes.fill(0x11, 0, 256 * 1024);
  const base = rawNode(await RawImage.open(new MemoryStorage(baseBytes)), {
    nodeName: "base",
    filename: "base.raw",
  });
  const layer = async (name: string, backing: BlockNode, at: number, fill: number) => {
    const storage = new MemoryStorage();
    await QedImage.create(storage, { size: SIZE, backingFile: backing.filename });
    const node = qedNode(await QedImage.open(storage), {
      nodeName: name,
      filename: `${name}.qed`,
      backing,
    });
    await node.write(at, new Uint8Array(64 * 1024).fill(fill));
    return node;
  };
  const mid = await layer("mid", base, 512 * 1024, 0x22);
  const top = await layer("top", mid, 1024 * 1024, 0x33);
  return { base, mid, top };
}

async function readAll(node: { read(o: number, b: Uint8Array): Promise<void> }) {
  const buf = new Uint8Array(SIZE);
  await node.read(0, buf);
  return buf;
}

Deno.test("startCommit() of an intermediate image merges it into the base and re-points the top", async () => {
  const { base, mid, top } = await chain();
  const before = await readAll(top);
  const jobs = new JobRegistry();
  const job = startCommit(jobs, new BlockDevice(top, { name: "top" }), {
    topNode: mid,
    jobId: "c",
  });
  await job.concluded;
  assert.equal(job.error, undefined);
  assert.equal(top.backing, base);
  assert.equal(top.image.backingFile, "base.raw");
  assert.deepEqual(await readAll(top), before);
});

Deno.test("a stream whose base is a commit's filter ends on the commit's base, whichever job ends first", async () => {
  for (const streamFirst of [true, false]) {
    // base ← mid ← upper ← node ← drive: commit mid into base, stream upper into node.
    const { base, mid, top: upper } = await chain();
    const overlay = async (name: string, backing: BlockNode) => {
      const storage = new MemoryStorage();
      await QedImage.create(storage, { size: SIZE, backingFile: backing.filename });
      return qedNode(await QedImage.open(storage), {
        nodeName: name,
        filename: `${name}.qed`,
        backing,
      });
    };
    const node = await overlay("node", upper);
    const drive = await overlay("drive", node);
    const before = await readAll(drive);
    const graph = new BlockGraph();
    for (const n of [base, mid, upper, node, drive]) graph.addNode(n);
    const jobs = new JobRegistry();
    const commit = startCommit(jobs, new BlockDevice(drive, { name: "drive" }), {
      jobId: "c",
      topNode: "mid",
      filterNodeName: "commit-filter",
      graph,
      speed: streamFirst ? 1 : 0,
    });
    const stream = startStream(jobs, node, {
      jobId: "s",
      baseNode: "commit-filter",
      graph,
      speed: streamFirst ? 0 : 1,
    });
    const [first, second] = streamFirst ? [stream, commit] : [commit, stream];
    await first.concluded;
    if (streamFirst) {
      // The commit still runs: the node now sits on the commit's top image.
      assert.equal(node.backing, mid);
      assert.equal(node.image.backingFile, "mid.qed");
    }
    second.setSpeed(0);
    await second.concluded;
    assert.equal(commit.error, undefined);
    assert.equal(stream.error, undefined);
    // Every node that sat on the commit's top now sits on its base, as in qemu.
    for (const n of [node, upper]) {
      assert.equal(n.backing, base, `${n.nodeName}, streamFirst=${streamFirst}`);
      assert.equal(n.image.backingFile, "base.raw");
    }
    assert.deepEqual(await readAll(drive), before);
  }
});

Deno.test("startCommit() active: guest writes while it runs reach the base before completion", async () => {
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            at: fc.integer({ min: 0, max: SIZE / 4096 - 16 }),
            blocks: fc.integer({ min: 1, max: 16 }),
            fill: fc.integer({ min: 1, max: 255 }),
            readyFirst: fc.boolean(),
          }),
          { maxLength: 8 },
        ),
        async (writes) => {
          const { base, top } = await chain();
          const device = new BlockDevice(top, { name: "top" });
          const jobs = new JobRegistry();
          const job = startCommit(jobs, device, { jobId: "a" });
          let ready!: () => void;
          const isReady = new Promise<void>((r) => ready = r);
          jobs.on((e) => e.event === "BLOCK_JOB_READY" && ready());
          const pending: Promise<void>[] = [];
          for (const w of writes) {
            if (w.readyFirst) await isReady;
            pending.push(device.write(w.at * 4096, new Uint8Array(w.blocks * 4096).fill(w.fill)));
          }
          await Promise.all(pending);
          await isReady;
          const guest = await readAll(device);
          job.complete();
          await job.concluded;
          assert.equal(job.error, undefined);
          assert.deepEqual(await readAll(base), guest);
          // After the pivot the device reads and writes the base.
          await device.write(0, new Uint8Array(4096).fill(0x77));
          assert.equal((await readAll(base))[0], 0x77);
        },
      ),
      { seed, numRuns: 15 },
    );
  }
});
