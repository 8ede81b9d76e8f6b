/**
 * The measurement behind DEFAULT_STREAM_PARALLEL: stream from a source behind
 * a link model (latency per request, one shared link of limited bandwidth) on
 * the virtual clock and compare the rates for several chunk counts.
 */

import assert from "node:assert/strict";
import { JobRegistry } from "../../block/job_registry.ts";
import { DEFAULT_STREAM_PARALLEL, startStream } from "../../block/stream_job.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";
import { latencyNode, memOverlay, templateNode } from "./_fixtures.ts";

const MiB = 1 << 20;
const SIZE = 32 * MiB;
const bytes = new Uint8Array(SIZE).map((_, i) => (i >> 9) & 0xff | 1);

/** Virtual milliseconds to stream SIZE bytes over the link with `parallel` chunks. */
async function measure(parallel: number, latencyMs: number, mibPerSecond: number): Promise<number> {
  const clock = new VirtualClock();
  const link = latencyNode(templateNode(bytes).node, clock, latencyMs, mibPerSecond * MiB / 1000);
  const top = await memOverlay(link, { clusterSize: 65536 });
  const jobs = new JobRegistry({ clock });
  return await clock.run(async () => {
    const start = clock.now();
    const job = startStream(jobs, top, { jobId: "m", parallel });
    await job.concluded;
    assert.equal(job.error, undefined);
    return clock.now() - start;
  });
}

Deno.test("DEFAULT_STREAM_PARALLEL is the smallest chunk count reaching 85 % of a 20 ms, 200 MiB/s link", async () => {
  const counts = [1, 2, 4, 8, 16, 32];
  const rates: number[] = [];
  for (const p of counts) rates.push(SIZE / MiB / ((await measure(p, 20, 200)) / 1000));
  const best = Math.max(...rates);
  console.log(
    "20 ms / 200 MiB/s link, MiB/s by chunks in flight: " +
      counts.map((p, i) => `${p}: ${rates[i]!.toFixed(1)}`).join(", "),
  );
  const chosen = counts[rates.findIndex((r) => r >= 0.85 * best)]!;
  assert.equal(DEFAULT_STREAM_PARALLEL, chosen);
  assert.ok(rates[counts.indexOf(chosen)]! > 5 * rates[0]!, "well above one chunk per round trip");
});

Deno.test("parallel chunks cost nothing on a fast local link", async () => {
  const one = await measure(1, 0.05, 2000);
  const many = await measure(DEFAULT_STREAM_PARALLEL, 0.05, 2000);
  console.log(
    `0.05 ms / 2000 MiB/s link: 1 chunk ${one.toFixed(1)} ms, ${DEFAULT_STREAM_PARALLEL} chunks ${
      many.toFixed(1)
    } ms`,
  );
  assert.ok(many <= one);
});
