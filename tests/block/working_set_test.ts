import assert from "node:assert/strict";
import fc from "fast-check";
import { JobRegistry } from "../../block/job_registry.ts";
import type { BlockNode } from "../../block/node.ts";
import { startStream } from "../../block/stream_job.ts";
import {
  type ByteRange,
  checkWorkingSetTemplate,
  decodeWorkingSet,
  encodeWorkingSet,
  type WorkingSet,
  WorkingSetError,
} from "../../block/working_set.ts";
import { WorkingSetRecorder } from "../../block/working_set_recorder.ts";
import { templateFingerprint } from "../../block/template_fingerprint.ts";
import { seeds } from "../_tools.ts";
import { memOverlay, patternBytes, readAll, templateNode } from "./_fixtures.ts";

const KiB = 1024;
const SIZE = 4 * 1024 * KiB;
const bytes = patternBytes(SIZE, [{ length: 300 * KiB, fill: 7 }, { length: 100 * KiB, fill: 0 }]);

/** A node that logs the offset of every read, in order. */
function loggingNode(node: BlockNode, log: number[]): BlockNode {
  return {
    ...node,
    size: node.size,
    read: (offset, buf) => {
      log.push(offset);
      return node.read(offset, buf);
    },
  };
}

function sample(): WorkingSet {
  return {
    templateSize: SIZE,
    fingerprint: new Uint8Array(32).fill(9),
    ranges: [{ offset: 65536, length: 4096 }, { offset: 0, length: 512 }],
  };
}

Deno.test("encodeWorkingSet() and decodeWorkingSet() round-trip", () => {
  const ws = sample();
  const bytes = encodeWorkingSet(ws);
  assert.equal(bytes.length, 56 + 12 * 2 + 4);
  assert.deepEqual(decodeWorkingSet(bytes), ws);
});

Deno.test("decodeWorkingSet() rejects bad input with typed errors", () => {
  const good = encodeWorkingSet(sample());
  const code = (b: Uint8Array) => {
    try {
      decodeWorkingSet(b);
    } catch (e) {
      assert.ok(e instanceof WorkingSetError);
      return e.code;
    }
    return "ok";
  };
  assert.equal(code(good.subarray(0, 20)), "WS_TRUNCATED");
  assert.equal(code(good.subarray(0, good.length - 1)), "WS_TRUNCATED");
  const magic = good.slice();
  magic[0] = 0;
  assert.equal(code(magic), "WS_BAD_MAGIC");
  const version = good.slice();
  version[4] = 2;
  assert.equal(code(version), "WS_BAD_VERSION");
  const flipped = good.slice();
  flipped[60]! ^= 1;
  assert.equal(code(flipped), "WS_BAD_CHECKSUM");
  const count = good.slice();
  new DataView(count.buffer).setUint32(48, 0xffffffff, true);
  assert.equal(code(count), "WS_TOO_MANY_RANGES");
  assert.throws(
    () => encodeWorkingSet({ ...sample(), ranges: [{ offset: SIZE - 1, length: 2 }] }),
    (e: unknown) => e instanceof WorkingSetError && e.code === "WS_BAD_RANGE",
  );
});

Deno.test("decodeWorkingSet() never throws anything but WorkingSetError on random bytes", () => {
  for (const seed of seeds()) {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(199), (junk, cut) => {
        const good = encodeWorkingSet(sample());
        const mixed = good.slice();
        mixed.set(junk.subarray(0, Math.max(0, mixed.length - cut)), cut % mixed.length);
        for (const b of [junk, mixed]) {
          try {
            decodeWorkingSet(b);
          } catch (e) {
            assert.ok(e instanceof WorkingSetError, String(e));
          }
        }
      }),
      { seed, numRuns: 200 },
    );
  }
});

Deno.test("WorkingSetRecorder keeps first-touch order, merges sequential reads, records each byte once", () => {
  const rec = new WorkingSetRecorder();
  rec.record(100, 50);
  rec.record(150, 50); // continues
  rec.record(0, 120); // [0, 100) new
  rec.record(500, 10);
  rec.record(90, 500); // [200, 500) and [510, 590) new
  assert.deepEqual(rec.ranges, [
    { offset: 100, length: 100 },
    { offset: 0, length: 100 },
    { offset: 500, length: 10 },
    { offset: 200, length: 300 },
    { offset: 510, length: 80 },
  ]);
  assert.equal(rec.bytes, 590);
  rec.stop();
  rec.record(1000, 10);
  assert.equal(rec.bytes, 590);
});

Deno.test("checkWorkingSetTemplate() accepts its template and rejects another", async () => {
  const { node } = templateNode(bytes);
  const rec = new WorkingSetRecorder();
  const wrapped = rec.wrap(node);
  await wrapped.read(8192, new Uint8Array(100));
  const ws = await rec.finish(node);
  assert.deepEqual(ws.ranges, [{ offset: 8192, length: 100 }]);
  await checkWorkingSetTemplate(decodeWorkingSet(encodeWorkingSet(ws)), node);
  const other = bytes.slice();
  other[5] = other[5]! ^ 0xff;
  await assert.rejects(
    () => checkWorkingSetTemplate(ws, templateNode(other).node),
    (e: unknown) => e instanceof WorkingSetError && e.code === "WS_WRONG_TEMPLATE",
  );
  assert.notDeepEqual(
    await templateFingerprint(node),
    await templateFingerprint(templateNode(other).node),
  );
});

Deno.test("startStream() with a working set copies its ranges first, in the recorded order", async () => {
  const log: number[] = [];
  const base = loggingNode(templateNode(bytes).node, log);
  const top = await memOverlay(base, { clusterSize: 65536 });
  const workingSet: ByteRange[] = [
    { offset: 3 * 1024 * KiB, length: 100 * KiB },
    { offset: 1024 * KiB + 5, length: 10 },
    { offset: 2 * 1024 * KiB, length: 200 * KiB },
  ];
  const job = startStream(new JobRegistry(), top, { jobId: "j", parallel: 1, workingSet });
  await job.concluded;
  assert.equal(job.error, undefined);
  // The first reads of the backing are the working set's clusters, in order.
  const clusterOf = (o: number) => Math.floor(o / 65536);
  const firstClusters = [...new Set(log.map(clusterOf))].slice(0, 3);
  assert.deepEqual(firstClusters, [48, 16, 32]);
  assert.equal(job.currentProgress, SIZE);
  assert.equal(job.totalProgress, SIZE);
  assert.equal(top.backing, null);
  assert.deepEqual(await readAll(top), bytes);
});

Deno.test("startStream() with any working set: complete, exact progress, copied in order", async () => {
  for (const seed of seeds()) {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ offset: fc.nat(SIZE - 1), length: fc.integer({ min: 1, max: 600 * KiB }) }),
          { maxLength: 8 },
        ),
        fc.integer({ min: 1, max: 4 }),
        async (ranges, parallel) => {
          const log: number[] = [];
          const base = loggingNode(templateNode(bytes).node, log);
          const top = await memOverlay(base, { clusterSize: 65536 });
          const job = startStream(new JobRegistry(), top, {
            jobId: "j",
            parallel,
            chunkSize: 128 * KiB,
            workingSet: ranges,
          });
          await job.concluded;
          assert.equal(job.error, undefined);
          assert.equal(job.currentProgress, SIZE);
          assert.deepEqual(await readAll(top), bytes);
          if (parallel === 1) {
            // With one chunk in flight the first backing read lies in the first range whose
            // clusters hold data (copies are widened to whole clusters).
            const widened = (r: { offset: number; length: number }) =>
              bytes.subarray(
                Math.floor(r.offset / 65536) * 65536,
                Math.ceil((r.offset + r.length) / 65536) * 65536,
              );
            const first = ranges.find((r) => widened(r).some((b) => b !== 0));
            if (first && log.length > 0) {
              const c = Math.floor(log[0]! / 65536);
              assert.ok(
                c >= Math.floor(first.offset / 65536) &&
                  c <= Math.floor((first.offset + first.length - 1) / 65536),
                `first read at ${log[0]} outside ${JSON.stringify(first)}`,
              );
            }
          }
        },
      ),
      { seed, numRuns: 25 },
    );
  }
});
