/**
 * Load and soak against `qedstream serve` (issue 8, part 4).
 *
 * Several drives stream at once (started staggered, rate-limited, one of
 * them cancelled), several QMP clients issue queries and speed changes in a
 * loop, and a guest writes through the NBD export of drive 0 meanwhile, for a
 * bounded time. Then: every client saw each job end (COMPLETED or CANCELLED)
 * exactly once, no job is left, the server's RSS stayed flat, and after a
 * clean shutdown every image passes `qemu-img check` and `qemu-img compare`
 * with the template plus the guest's writes.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { NbdClient } from "../../nbd/client.ts";
import { Random } from "../../sim/random.ts";
import { programsPresent, run, tempDir } from "../_tools.ts";
import { count, report } from "./_campaign.ts";
import { QmpLines, startServe } from "./_serve.ts";

const MiB = 1024 * 1024;
const KiB = 1024;

function templateBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = ((i >> 12) * 31 + i) & 0xff;
  out.fill(0, 2 * MiB, 3 * MiB); // a hole
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test({
  name:
    "load: many streams, QMP clients in a loop and a guest at once; no lost event, no stuck job, flat memory, correct images",
  ignore: !programsPresent("qemu-img"),
  fn: async () => {
    const seconds = count(15, 180);
    const drives = count(8, 16);
    const clients = count(4, 8);
    const size = 8 * MiB;
    const template = templateBytes(size);
    await using dir = await tempDir();
    const serve = await startServe(dir.path, template, drives);
    const rng = new Random(20261125);
    const expected0 = template.slice();
    const totals = { commands: 0, streams: 0, cancelled: 0, guestWrites: 0, rssSamples: 0 };
    const rss: number[] = [];
    let serverClosed = false;
    try {
      const qmp = await Promise.all(
        Array.from({ length: clients }, () => QmpLines.open(serve.qmp)),
      );
      const started = Date.now();
      const deadline = started + seconds * 1000;
      // Each stream lasts about half the run: speed = size / (seconds / 2).
      const speed = Math.ceil(size / (seconds / 2));
      const jobIds: string[] = [];
      const starter = (async () => {
        for (let i = 0; i < drives; i++) {
          const r = await qmp[0]!.call("block-stream", {
            device: `d${i}`,
            "job-id": `job${i}`,
            speed,
          });
          assert.ok("return" in r, JSON.stringify(r));
          jobIds.push(`job${i}`);
          totals.streams++;
          if (i === drives - 1) {
            // The last stream is cancelled soon after it starts: BLOCK_JOB_CANCELLED, backing kept.
            await sleep(200);
            const c = await qmp[0]!.call("block-job-cancel", { device: `job${i}` });
            assert.ok("return" in c, JSON.stringify(c));
            totals.cancelled++;
          }
          await sleep((seconds * 1000) / (2 * drives));
        }
      })();
      const queries = ["query-block-jobs", "query-jobs", "query-named-block-nodes", "query-block"];
      const loops = qmp.map(async (client, c) => {
        const mine = rng.fork(`client${c}`);
        while (Date.now() < deadline) {
          const r = mine.next();
          if (r < 0.8) await client.call(mine.pick(queries));
          else if (jobIds.length > 0) {
            const id = mine.pick(jobIds);
            // May race with the job's end: then qemu's DeviceNotActive is the answer.
            // Never a raise (a lower, then the same speed): in qemu 7.2 (and here) each raise wakes the job early,
            // so raises in a loop defeat the rate limit (checked against qsd 7.2).
            await client.call("block-job-set-speed", {
              device: id,
              speed: speed - KiB,
            });
          }
          totals.commands++;
        }
      });
      const guest = (async () => {
        const nbd = await NbdClient.connect({
          address: { type: "unix", path: serve.nbd },
          exportName: "d0",
        });
        while (Date.now() < deadline) {
          const offset = rng.int(0, size / 512 - 128) * 512;
          const data = new Uint8Array(rng.int(1, 128) * 512).fill(rng.int(1, 256));
          await nbd.write(offset, data);
          expected0.set(data, offset);
          totals.guestWrites++;
          if (totals.guestWrites % 20 === 0) await nbd.flush();
          await sleep(5);
        }
        await nbd.flush();
        await nbd.close();
      })();
      const sampler = (async () => {
        while (Date.now() < deadline) {
          rss.push(await serve.rssKiB());
          await sleep(500);
        }
      })();
      await Promise.all([starter, ...loops, guest, sampler]);
      // Every job ends; none is left (a bounded wait: stuck jobs fail here).
      const endBy = Date.now() + 60_000;
      for (;;) {
        const r = await qmp[0]!.call("query-block-jobs");
        if ((r.return as unknown[]).length === 0) break;
        assert.ok(Date.now() < endBy, `jobs stuck: ${JSON.stringify(r.return)}`);
        await sleep(100);
      }
      await sleep(200);
      for (const [c, client] of qmp.entries()) {
        for (const id of jobIds) {
          const ends = client.events.filter((e) =>
            (e.event === "BLOCK_JOB_COMPLETED" || e.event === "BLOCK_JOB_CANCELLED") &&
            (e.data as { device: string }).device === id
          );
          assert.equal(ends.length, 1, `client ${c} saw ${ends.length} ends of ${id}`);
          const d = ends[0]!.data as { error?: string };
          assert.equal(d.error, undefined, `${id}: ${d.error}`);
        }
      }
      const elapsed = (Date.now() - started) / 1000;
      const stamp = (e: Record<string, unknown>) => {
        const t = e.timestamp as { seconds: number; microseconds: number };
        return t.seconds + t.microseconds / 1e6;
      };
      const durations = jobIds.map((id) => {
        const mine = qmp[0]!.events.filter((e) =>
          (e.data as { id?: string; device?: string } | undefined)?.id === id ||
          (e.data as { device?: string } | undefined)?.device === id
        );
        return mine.length > 1 ? stamp(mine.at(-1)!) - stamp(mine[0]!) : 0;
      });
      const streamSeconds = durations.map((d) => d.toFixed(1)).join("/");
      // Memory flat: once every stream runs (second quarter) the server's RSS
      // may hold caches, but must not keep growing through the last quarter.
      const q = Math.max(1, Math.floor(rss.length / 4));
      const early = Math.max(...rss.slice(q, 2 * q));
      const late = Math.max(...rss.slice(-q));
      totals.rssSamples = rss.length;
      for (const q of qmp) await q.close();
      // A clean shutdown: quit flushes and closes every image.
      const last = await QmpLines.open(serve.qmp);
      await last.call("quit").catch(() => {});
      await last.close();
      await serve.child.status;
      serverClosed = true;
      report("load (serve)", {
        ...totals,
        drives,
        clients,
        seconds: elapsed.toFixed(1),
        streamSeconds,
        commandsPerSecond: Math.round(totals.commands / elapsed),
        rssEarlyMiB: Math.round(early / 1024),
        rssLateMiB: Math.round(late / 1024),
      });
      assert.ok(late - early < 64 * 1024, `server RSS grew from ${early} to ${late} KiB`);
      // The images: consistent, and equal to the template (+ the guest's writes on d0).
      const expectedFile = join(dir.path, "expected0.raw");
      await Deno.writeFile(expectedFile, expected0);
      for (const [i, path] of serve.drives.entries()) {
        const check = await run("qemu-img", ["check", "-f", "qed", path]);
        assert.ok(check.code === 0 || check.code === 3, `${path}: ${check.stdout}${check.stderr}`);
        const against = i === 0 ? expectedFile : serve.template;
        const cmp = await run("qemu-img", ["compare", "-f", "qed", "-F", "raw", path, against]);
        assert.equal(cmp.code, 0, `${path}: ${cmp.stdout}${cmp.stderr}`);
      }
    } finally {
      if (!serverClosed) await serve[Symbol.asyncDispose]();
    }
  },
});
