import assert from "node:assert/strict";
import { BLOCK_JOB_SLICE_NS, RateLimit } from "../../block/rate_limit.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";

Deno.test("RateLimit: quota per 100 ms slice is max(speed × 0.1 s, 1), truncated", () => {
  const limit = new RateLimit(new VirtualClock());
  assert.equal(BLOCK_JOB_SLICE_NS, 100_000_000);
  limit.setSpeed(1048576);
  assert.equal(limit.sliceQuota, 104857);
  limit.setSpeed(1);
  assert.equal(limit.sliceQuota, 1);
  limit.setSpeed(0);
  assert.equal(limit.sliceQuota, 0);
  assert.equal(limit.delayFor(1 << 30), 0, "0 = unlimited");
});

Deno.test("RateLimit: a chunk over the quota stretches the slice by dispatched / quota", async () => {
  const clock = new VirtualClock();
  const limit = new RateLimit(clock);
  limit.setSpeed(2 * 1048576); // quota 209715 bytes per slice
  // 524288 / 209715 slices = 250000238 ns (truncated), as qemu computes in integer ns.
  assert.equal(limit.delayFor(524288), 250.000238);
  await clock.advance(250);
  // The stretched slice has not ended (250 ms < 250.000238 ms): its accounting goes on.
  assert.equal(limit.delayFor(524288), (500000476 - 250000000) / 1e6);
});

Deno.test("RateLimit: below the quota there is no delay; a new slice starts after the old one ended", async () => {
  const clock = new VirtualClock();
  const limit = new RateLimit(clock);
  limit.setSpeed(1000_000); // 100000 per slice
  assert.equal(limit.delayFor(40_000), 0);
  assert.equal(limit.delayFor(40_000), 0);
  assert.ok(Math.abs(limit.delayFor(40_000) - 120) < 1e-6, "120000 / 100000 slices = 120 ms");
  await clock.advance(500);
  assert.equal(limit.delayFor(40_000), 0, "a fresh slice");
});

Deno.test("RateLimit: 512 KiB chunks at 1 MiB/s take half a second each", async () => {
  const clock = new VirtualClock();
  const limit = new RateLimit(clock);
  limit.setSpeed(1048576);
  let total = 0;
  for (let i = 0; i < 10; i++) {
    const d = limit.delayFor(524288);
    total += d;
    await clock.advance(d);
  }
  assert.ok(Math.abs(total - 5000) < 1, `${total}`);
});
