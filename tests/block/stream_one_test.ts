import assert from "node:assert/strict";
import { BlockDevice } from "../../block/device.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import { startStream } from "../../block/stream_job.ts";
import { streamOne } from "../../block/stream_one.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";
import { firstDiff, memOverlay, patternBytes, readAll, templateNode } from "./_fixtures.ts";

const MiB = 1 << 20;
const KiB = 1024;

Deno.test("streamOne() streams piece by piece, returns where to continue, and completes at the end", async () => {
  const bytes = patternBytes(4 * MiB, [{ length: MiB, fill: 0x33 }, { length: MiB, fill: 0 }]);
  const base = templateNode(bytes);
  const top = await memOverlay(base.node, { clusterSize: 65536 });
  await top.write(MiB + 4096, new Uint8Array(100).fill(0xee));
  const expected = await readAll(new BlockDevice(top));
  const pieces: [number, number, boolean][] = [];
  let at = 0;
  for (;;) {
    const r = await streamOne(top, at);
    pieces.push([r.offset, r.length, r.copied]);
    assert.equal(r.next, r.offset + r.length);
    if (r.done) {
      assert.equal(r.completed, true);
      break;
    }
    assert.equal(r.completed, false);
    at = r.next;
  }
  assert.deepEqual(pieces.slice(0, 4), [
    [0, 512 * KiB, true],
    [512 * KiB, 512 * KiB, true],
    [MiB, 65536, false], // the cluster the guest wrote
    [MiB + 65536, 512 * KiB, true],
  ]);
  assert.equal(pieces.reduce((n, p) => n + p[1], 0), 4 * MiB);
  assert.equal(top.backing, null);
  assert.equal(top.image.header.features, 0n);
  top.image.backing = null;
  assert.equal(firstDiff(await readAll(top), expected), -1);
  // Streaming an independent device is a no-op that reports the end.
  assert.deepEqual(await streamOne(top, 0), {
    offset: 0,
    length: 4 * MiB,
    copied: false,
    next: 4 * MiB,
    done: true,
    completed: true,
  });
});

Deno.test("streamOne() does not complete when pieces were skipped, nor with finish: false", async () => {
  const base = templateNode(new Uint8Array(MiB).fill(5));
  const top = await memOverlay(base.node, { clusterSize: 65536 });
  const last = await streamOne(top, MiB - 512 * KiB);
  assert.equal(last.done, true);
  assert.equal(last.completed, false, "the first half was never streamed");
  assert.ok(top.backing);
  await streamOne(top, 0, { finish: false });
  const again = await streamOne(top, MiB - 512 * KiB, { finish: false });
  assert.equal(again.completed, false);
  assert.ok(top.backing);
  const done = await streamOne(top, MiB - 512 * KiB);
  assert.equal(done.completed, true);
  assert.equal(top.backing, null);
});

Deno.test("streamOne() with a base keeps it as the backing and refuses a busy chain at completion", async () => {
  const base = templateNode(new Uint8Array(MiB).fill(1), "base", "/b.raw");
  const mid = await memOverlay(base.node, { nodeName: "mid" });
  await mid.write(0, new Uint8Array(8192).fill(2));
  const top = await memOverlay(mid, { nodeName: "top" });
  const clock = new VirtualClock();
  const jobs = new JobRegistry({ clock });
  await clock.run(async () => {
    const job = startStream(jobs, top, { jobId: "j", speed: 1 });
    await assert.rejects(() => streamOne(top, MiB - 4096, { base: base.node }), {
      message: "Node 'top' is busy: block device is in use by block job: stream",
    });
    job.cancel();
    await job.concluded;
  });
  let r = await streamOne(top, 0, { base: base.node });
  while (!r.done) r = await streamOne(top, r.next, { base: base.node });
  assert.equal(r.completed, true);
  assert.equal(top.backing, base.node);
  assert.equal(top.image.backingFile, "/b.raw");
});
