/**
 * A test that proves a management tool survives an `on-error=stop` pause:
 * the template's repository goes away in the middle of a stream, the job
 * pauses with `io-status: failed` instead of failing, and the tool resumes
 * it (with a back-off) until the stream completes once the repository is
 * back. A guest keeps running on the disk throughout and checks every byte
 * it reads.
 *
 * `keepStreaming()` stands for your tool's supervisor; the test around it is
 * what you would copy into your own suite. Run it with
 * `deno test -A examples/on_error_stop_test.ts`: on a virtual clock, the
 * whole outage and recovery take a few milliseconds of real time.
 *
 * @module
 */

import assert from "node:assert/strict";
// In your own project: import { ... } from "jsr:@qedstream/qedstream";
import { type Clock, type QmpClient, startEmulator } from "@qedstream/qedstream";

/** What the supervisor saw. */
export interface SupervisorLog {
  /** `BLOCK_JOB_ERROR` events, by action. */
  errors: string[];
  /** `block-job-resume` calls it made. */
  resumes: number;
  /** The io-status each time it found the job paused. */
  pausedWith: string[];
}

/**
 * Starts `block-stream` with `on-error=stop` and keeps it going: whenever
 * the job stops on an error it waits `retryMs`, then resumes it, at most
 * `maxResumes` times; resolves when the job completes, and cancels it when
 * it gives up.
 */
export async function keepStreaming(
  qmp: QmpClient,
  device: string,
  clock: Clock,
  options: { retryMs?: number; maxResumes?: number } = {},
): Promise<SupervisorLog> {
  const jobId = `keep-${device}`;
  const log: SupervisorLog = { errors: [], resumes: 0, pausedWith: [] };
  await qmp.execute("block-stream", { "job-id": jobId, device, "on-error": "stop" });
  for await (const event of qmp.events()) {
    if (event.data.device !== jobId) continue;
    if (event.event === "BLOCK_JOB_COMPLETED") {
      if (event.data.error !== undefined) throw new Error(`stream failed: ${event.data.error}`);
      return log;
    }
    if (event.event === "BLOCK_JOB_CANCELLED") throw new Error("stream was cancelled");
    if (event.event !== "BLOCK_JOB_ERROR") continue;
    log.errors.push(String(event.data.action));
    await clock.sleep(options.retryMs ?? 1000);
    // Several chunks in flight can each report the same stop: resume only a
    // job that is still paused, or block-job-resume would be refused.
    const jobs = await qmp.execute<{ device: string; status: string; "io-status": string }[]>(
      "query-block-jobs",
    );
    const job = jobs.find((j) => j.device === jobId);
    if (job?.status !== "paused") continue;
    log.pausedWith.push(job["io-status"]);
    if (log.resumes >= (options.maxResumes ?? 10)) {
      await qmp.execute("block-job-cancel", { device: jobId, force: true });
      throw new Error(`gave up after ${log.resumes} resumes`);
    }
    log.resumes++;
    await qmp.execute("block-job-resume", { device: jobId });
  }
  throw new Error("QMP connection closed");
}

Deno.test("keepStreaming() rides out a repository outage with on-error=stop", async () => {
  await using emu = await startEmulator({
    clock: "virtual",
    drives: [{
      name: "vm1",
      template: {
        type: "remote",
        template: { size: 32 << 20, bootRegionLength: 8 << 20, seed: 3 },
        network: { rttMs: 20, bandwidth: 8 << 20 },
      },
      // The repository is unreachable from 0.5 s to 3 s of virtual time.
      faults: { outage: [{ start: 500, end: 3000 }] },
    }],
    guest: {
      drive: "vm1",
      boot: { regionLength: 4 << 20, files: 20 },
      steady: { durationMs: 10_000 },
    },
  });
  const qmp = await emu.connect();

  const log = await emu.run(() => keepStreaming(qmp, "vm1", emu.clock, { retryMs: 500 }));

  // The job stopped (rather than failed), was found paused on a failed
  // read, and was resumed until the outage ended.
  assert.ok(log.errors.length > 0 && log.errors.every((a) => a === "stop"));
  assert.ok(log.resumes >= 2, `resumed ${log.resumes} times`);
  assert.ok(log.pausedWith.every((s) => s === "failed"));
  assert.ok(emu.clock.now() >= 3000);

  // The disk is complete and no longer needs the template...
  const drive = emu.drive("vm1");
  assert.equal(drive.independent, true);
  assert.equal((await drive.check()).corruptions, 0);
  // ...and the guest, which kept running, never read a wrong byte.
  const report = await emu.run(() => emu.guest!.report);
  assert.ok(report.reads > 0);
  const expected = new Uint8Array(1 << 20);
  await emu.guest!.guest.expected(20 << 20, expected);
  assert.deepEqual(await drive.read(20 << 20, 1 << 20), expected);
});

Deno.test("keepStreaming() gives up and cancels when the repository never returns", async () => {
  await using emu = await startEmulator({
    clock: "virtual",
    drives: [{
      name: "vm1",
      template: { type: "remote", template: { size: 8 << 20 } },
      faults: { outage: true },
    }],
  });
  const qmp = await emu.connect();
  await assert.rejects(
    () => emu.run(() => keepStreaming(qmp, "vm1", emu.clock, { retryMs: 100, maxResumes: 3 })),
    /gave up after 3 resumes/,
  );
  assert.equal(emu.drive("vm1").independent, false);
});
