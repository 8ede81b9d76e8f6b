/**
 * Random verb sequences on a stream job at random virtual times: the job
 * only ever takes transitions of the table, refuses exactly the verbs the
 * table refuses, and ends with exactly one end event.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { JobError } from "../../block/error.ts";
import type { JobEvent } from "../../block/job.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import {
  canTransition,
  type JobStatus,
  type JobVerb,
  verbAllowed,
} from "../../block/job_status.ts";
import { startStream } from "../../block/stream_job.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";
import { seeds } from "../_tools.ts";
import { memOverlay, templateNode } from "./_fixtures.ts";

const MiB = 1 << 20;
const verbs: JobVerb[] = [
  "cancel",
  "pause",
  "resume",
  "set-speed",
  "complete",
  "finalize",
  "dismiss",
];

for (const seed of seeds()) {
  Deno.test(`stream job verbs in random orders follow the tables (seed ${seed})`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.tuple(fc.constantFrom(...verbs), fc.integer({ min: 0, max: 400 }), fc.boolean()),
          {
            maxLength: 12,
          },
        ),
        fc.boolean(),
        fc.boolean(),
        fc.constantFrom(0, 1 << 20, 8 << 20),
        async (steps, autoFinalize, autoDismiss, speed) => {
          const clock = new VirtualClock();
          const jobs = new JobRegistry({ clock });
          const template = templateNode(new Uint8Array(2 * MiB).fill(3));
          const top = await memOverlay(template.node, { clusterSize: 65536 });
          const events: JobEvent[] = [];
          let status: JobStatus = "undefined";
          jobs.on((e) => {
            events.push(e);
            if (e.event === "JOB_STATUS_CHANGE") {
              assert.ok(canTransition(status, e.data.status), `${status} → ${e.data.status}`);
              status = e.data.status;
            }
          });
          await clock.run(async () => {
            const job = startStream(jobs, top, {
              jobId: "job0",
              autoFinalize,
              autoDismiss,
              speed,
              chunkSize: 256 * 1024,
            });
            for (const [verb, wait, force] of steps) {
              await clock.sleep(wait);
              const before = job.status;
              const userPaused = job.userPaused;
              let error: unknown;
              try {
                if (verb === "cancel") job.cancel({ force });
                else if (verb === "pause") job.pause();
                else if (verb === "resume") job.resume();
                else if (verb === "set-speed") job.setSpeed(force ? 0 : 1 << 20);
                else if (verb === "complete") job.complete();
                else if (verb === "finalize") await job.finalize();
                else job.dismiss();
              } catch (e) {
                error = e;
              }
              if (error !== undefined) assert.ok(error instanceof JobError, String(error));
              const refusal =
                `Job 'job0' in state '${before}' cannot accept command verb '${verb}'`;
              const message = (error as Error | undefined)?.message;
              const special = (verb === "resume" && !userPaused) ||
                (verb === "cancel" && userPaused && !force);
              if (!special && !verbAllowed(verb, before)) assert.equal(message, refusal);
              if (verbAllowed(verb, before)) assert.notEqual(message, refusal);
            }
            // Let it end.
            for (let i = 0; i < 100 && job.status !== "null"; i++) {
              try {
                if (job.status === "pending") await job.finalize();
                else if (job.status === "concluded") job.dismiss();
                else if (job.userPaused) job.resume();
              } catch { /* moving on */ }
              await clock.sleep(100);
            }
            assert.equal(job.status, "null");
            const ends = events.filter((e) =>
              e.event === "BLOCK_JOB_COMPLETED" || e.event === "BLOCK_JOB_CANCELLED"
            );
            assert.equal(ends.length, 1);
            const end = ends[0]!;
            const data = end.data as { len: number; offset: number; error?: string };
            if (end.event === "BLOCK_JOB_COMPLETED") {
              assert.equal(data.error, undefined);
              assert.equal(data.offset, data.len);
              assert.equal(top.backing, null);
            } else {
              assert.ok(data.offset <= data.len);
              assert.ok(top.backing);
            }
            assert.equal(
              events.some((e) => e.event === "BLOCK_JOB_PENDING"),
              !autoFinalize &&
                events.some((e) => e.event === "JOB_STATUS_CHANGE" && e.data.status === "pending"),
            );
          });
        },
      ),
      { seed, numRuns: 120 },
    );
  });
}
