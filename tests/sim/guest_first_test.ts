/**
 * Guest first on the virtual clock: guest read latency p99 while an
 * unthrottled stream runs stays within 2x the p99 of the same workload on
 * the same overlay without streaming.
 */

import assert from "node:assert/strict";
import { JobRegistry } from "../../block/job_registry.ts";
import type { GuestFirstOptions } from "../../block/guest_first.ts";
import {
  LocalDisk,
  Machine,
  type MachineRun,
  RemoteTemplate,
  SparseTemplate,
  summarize,
  VirtualClock,
} from "../../sim/mod.ts";

const MIB = 1 << 20;

async function provision(
  mode: "overlay" | "stream",
  bandwidth: number,
  guestFirst?: boolean | Omit<GuestFirstOptions, "clock">,
): Promise<MachineRun> {
  const template = new SparseTemplate({
    size: 1024 * MIB,
    bootRegionLength: 32 * MIB,
    dataFraction: 0.1,
    seed: 3,
  });
  const clock = new VirtualClock();
  const repo = new RemoteTemplate(template, { clock, rttMs: 20, bandwidth });
  const machine = new Machine({
    name: mode,
    mode,
    clock,
    template,
    remote: repo.connect(mode),
    storage: new LocalDisk({ clock, latencyMs: 0.05 }),
    jobs: new JobRegistry({ clock }),
    guest: { seed: 7, boot: { regionLength: 16 * MIB, files: 100 }, steady: { durationMs: 8000 } },
    stream: { speed: 0, ...(guestFirst !== undefined ? { guestFirst } : {}) },
  });
  return await clock.run(() => machine.run(), { limit: 600_000 });
}

/** p99 of the guest's reads; with `during`, only those issued while the stream ran. */
function readP99(run: MachineRun, during = false): number {
  const end = run.independentAt ?? Infinity;
  return summarize(
    run.guest.samples
      .filter((s) => s.kind === "read" && (!during || s.at < end))
      .map((s) => s.latencyMs),
  ).p99;
}

for (const [label, bandwidth] of [["1 Gbit/s", 125_000_000], ["100 Mbit/s", 12_500_000]] as const) {
  Deno.test(`guest first keeps read p99 during an unthrottled stream within 2x of no streaming (${label})`, async () => {
    const base = readP99(await provision("overlay", bandwidth));
    const plain = await provision("stream", bandwidth);
    const first = await provision("stream", bandwidth, true);
    const adaptive = await provision("stream", bandwidth, {
      adaptive: { targetLatencyMs: 2 * 20 },
    });
    const ratios = [plain, first, adaptive].map((r) => readP99(r, true) / base);
    console.log(
      `${label}: read p99 without streaming ${base.toFixed(1)} ms; during the stream, ` +
        `plain ${ratios[0]!.toFixed(2)}x, guest first ${ratios[1]!.toFixed(2)}x, ` +
        `adaptive ${ratios[2]!.toFixed(2)}x`,
    );
    for (const r of [first, adaptive]) {
      assert.notEqual(r.independentAt, null, "the stream still completes");
      assert.ok(r.guestFirst!.guestMisses > 0);
    }
    assert.ok(ratios[1]! <= 2, `guest first: ${ratios[1]}x`);
    assert.ok(ratios[2]! <= 2, `adaptive: ${ratios[2]}x`);
  });
}
