import assert from "node:assert/strict";
import fc from "fast-check";
import { RequestTracker } from "../../block/request_tracker.ts";
import { seeds } from "../_tools.ts";

/** Whether `p` has settled after the current microtasks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(() => done = true, () => done = true);
  await new Promise((r) => setTimeout(r, 0));
  return done;
}

Deno.test("RequestTracker: a serialising request widened to clusters holds off a later overlapping write", async () => {
  const t = new RequestTracker();
  const copy = await t.begin(4096, 512, { serialising: true, alignment: 65536 });
  assert.equal(copy.overlapOffset, 0);
  assert.equal(copy.overlapLength, 65536);
  const write = t.begin(60000, 100);
  const elsewhere = t.begin(65536, 100);
  assert.equal(await settled(write), false);
  assert.equal(await settled(elsewhere), true, "unrelated ranges never wait");
  t.end(copy);
  assert.equal(await settled(write), true);
});

Deno.test("RequestTracker: a serialising request waits for overlapping earlier ordinary requests", async () => {
  const t = new RequestTracker();
  const read = await t.begin(0, 512);
  const copy = t.begin(1000, 10, { serialising: true, alignment: 4096 });
  assert.equal(await settled(copy), false);
  const later = t.begin(100, 10);
  assert.equal(await settled(later), false, "a later request waits for the waiting copy");
  t.end(read);
  const c = await copy;
  assert.equal(await settled(later), false);
  t.end(c);
  assert.equal(await settled(later), true);
});

Deno.test("RequestTracker: ordinary requests never wait for each other", async () => {
  const t = new RequestTracker();
  const a = await t.begin(0, 4096);
  const b = t.begin(0, 4096);
  assert.equal(await settled(b), true);
  t.end(a);
  t.end(await b);
  assert.equal(t.inFlight.length, 0);
});

Deno.test("RequestTracker: an aborted wait unregisters the request", async () => {
  const t = new RequestTracker();
  const copy = await t.begin(0, 10, { serialising: true });
  const ac = new AbortController();
  const w = t.begin(0, 10, { signal: ac.signal });
  ac.abort();
  await assert.rejects(w);
  assert.equal(t.inFlight.length, 1);
  t.end(copy);
});

for (const seed of seeds()) {
  Deno.test(`RequestTracker: conflicting requests never run at once and everything finishes (seed ${seed})`, async () => {
    const req = fc.record({
      offset: fc.integer({ min: 0, max: 64 }),
      length: fc.integer({ min: 1, max: 16 }),
      serialising: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fc.scheduler(), fc.array(req, { maxLength: 12 }), async (s, reqs) => {
        const t = new RequestTracker();
        const running: { lo: number; hi: number; serialising: boolean }[] = [];
        const align = 8;
        const one = async (r: typeof reqs[0], i: number) => {
          await s.schedule(Promise.resolve(), `start ${i}`);
          await t.run(
            r.offset,
            r.length,
            { serialising: r.serialising, alignment: align },
            async () => {
              const lo = r.serialising ? Math.floor(r.offset / align) * align : r.offset;
              const hi = r.serialising
                ? Math.ceil((r.offset + r.length) / align) * align
                : r.offset + r.length;
              for (const o of running) {
                const overlap = o.lo < hi && lo < o.hi;
                assert.ok(
                  !(overlap && (o.serialising || r.serialising)),
                  "conflicting requests overlap in time",
                );
              }
              const me = { lo, hi, serialising: r.serialising };
              running.push(me);
              await s.schedule(Promise.resolve(), `io ${i}`);
              running.splice(running.indexOf(me), 1);
            },
          );
        };
        await s.waitFor(Promise.all(reqs.map(one)));
        assert.equal(t.inFlight.length, 0);
      }),
      { seed, numRuns: 200 },
    );
  });
}
