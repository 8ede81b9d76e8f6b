/**
 * A provisioning script: boot a machine from a thin overlay at once, stream
 * the template into it in the background, and wait until the disk no longer
 * needs the template (it is "independent"), reporting progress on the way.
 *
 * `provision()` is the part you would keep: it only speaks QMP, so it runs
 * unchanged against `qedstream serve`, a real qemu-storage-daemon 7.2, or
 * the emulator. Run it:
 *
 * ```sh
 * deno run -A examples/provision.ts                       # against an emulator it starts
 * deno run -A examples/provision.ts /tmp/qmp.sock vm1     # against a running daemon
 * ```
 *
 * With no arguments it starts an emulator whose template sits in a
 * simulated remote repository 30 ms away, on a virtual clock: minutes of
 * provisioning run in well under a second, and repeat exactly.
 *
 * @module
 */

// In your own project: import { ... } from "jsr:@qedstream/qedstream";
import { type Clock, type QmpClient, startEmulator, systemClock } from "@qedstream/qedstream";

/** What {@linkcode provision} reports. */
export interface ProvisionResult {
  /** Bytes the stream processed. */
  streamed: number;
  /** Progress reports seen on the way (one per poll). */
  progress: { offset: number; len: number }[];
}

/**
 * Streams `device` into independence: starts `block-stream`, polls
 * `query-block-jobs` every `pollMs` for progress, waits for
 * `BLOCK_JOB_COMPLETED` and then checks with `query-named-block-nodes` that
 * the overlay's header names no backing file any more.
 *
 * @param clock what the tool waits on between polls: `systemClock` in
 *   production, the emulator's clock in a test (then polling costs no real
 *   time).
 */
export async function provision(
  qmp: QmpClient,
  device: string,
  clock: Clock,
  options: { pollMs?: number; speed?: number } = {},
): Promise<ProvisionResult> {
  const jobId = `provision-${device}`;
  const progress: { offset: number; len: number }[] = [];
  // Listen before starting: a fast stream may complete before the next line runs.
  const completed = qmp.waitEvent("BLOCK_JOB_COMPLETED", {
    filter: (e) => e.data.device === jobId,
  });
  await qmp.execute("block-stream", {
    "job-id": jobId,
    device,
    ...(options.speed ? { speed: options.speed } : {}),
  });
  // Completion cuts the poll's sleep short, so no timer outlives the stream.
  const finished = new AbortController();
  const done = completed.finally(() => finished.abort());
  // Poll for progress while the job runs, as a provisioning dashboard would.
  while (!finished.signal.aborted) {
    const jobs = await qmp.execute<{ device: string; offset: number; len: number }[]>(
      "query-block-jobs",
    );
    const job = jobs.find((j) => j.device === jobId);
    if (job) progress.push({ offset: job.offset, len: job.len });
    await clock.sleep(options.pollMs ?? 1000, finished.signal).catch(() => {});
  }
  const event = await done;
  if (event.data.error !== undefined) {
    throw new Error(`stream of ${device} failed: ${event.data.error}`);
  }
  // Independence: the overlay's image no longer names a backing file.
  const nodes = await qmp.execute<{ "node-name": string; image: Record<string, unknown> }[]>(
    "query-named-block-nodes",
  );
  const node = nodes.find((n) => n["node-name"] === device);
  if (!node || node.image["backing-filename"] !== undefined) {
    throw new Error(`${device} still depends on its template`);
  }
  return { streamed: Number(event.data.offset), progress };
}

if (import.meta.main) {
  const [socket, device = "vm1"] = Deno.args;
  if (socket) {
    // A running qemu-storage-daemon or `qedstream serve` with a QMP monitor.
    const { QmpClient } = await import("@qedstream/qedstream");
    const qmp = await QmpClient.connect({ path: socket });
    try {
      const result = await provision(qmp, device, systemClock);
      console.log(`${device}: streamed ${result.streamed} bytes, now independent`);
    } finally {
      await qmp.close();
    }
  } else {
    await using emu = await startEmulator({
      clock: "virtual",
      drives: [{
        name: device,
        template: {
          type: "remote",
          template: { size: 256 << 20, bootRegionLength: 32 << 20, seed: 7 },
          network: { rttMs: 30, bandwidth: 20 << 20 },
        },
      }],
    });
    const qmp = await emu.connect();
    const result = await emu.run(() => provision(qmp, device, emu.clock, { pollMs: 2000 }));
    const last = result.progress.at(-1);
    console.log(
      `${device}: streamed ${result.streamed} bytes in ${(emu.clock.now() / 1000).toFixed(1)} ` +
        `virtual s, ${result.progress.length} progress reports (last ${last?.offset}/${last?.len}), ` +
        `now independent`,
    );
    const check = await emu.drive(device).check();
    console.log(`image check: ${check.corruptions} corruptions, ${check.leaks} leaks`);
  }
}
