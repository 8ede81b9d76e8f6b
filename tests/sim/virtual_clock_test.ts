import assert from "node:assert/strict";
import { VirtualClock, VirtualClockError } from "../../sim/virtual_clock.ts";

Deno.test("VirtualClock.run() jumps to deadlines in order and repeats exactly", async () => {
  const trace = async () => {
    const clock = new VirtualClock();
    const log: string[] = [];
    await clock.run(async () => {
      await Promise.all([
        (async () => {
          for (let i = 0; i < 3; i++) {
            await clock.sleep(100);
            log.push(`a@${clock.now()}`);
          }
        })(),
        (async () => {
          await clock.sleep(150);
          log.push(`b@${clock.now()}`);
          await clock.sleep(150);
          log.push(`b@${clock.now()}`);
        })(),
      ]);
    });
    return log;
  };
  const first = await trace();
  // Equal deadlines fire in the order they were set: b set its 300 ms timer at 150, a at 200.
  assert.deepEqual(first, ["a@100", "b@150", "a@200", "b@300", "a@300"]);
  assert.deepEqual(await trace(), first);
});

Deno.test("VirtualClock.sleep() rejects at once when its signal aborts", async () => {
  const clock = new VirtualClock();
  const ac = new AbortController();
  const result = clock.run(async () => {
    const p = clock.sleep(1000, ac.signal).then(() => "slept", () => `aborted@${clock.now()}`);
    await clock.sleep(10);
    ac.abort();
    return await p;
  });
  assert.equal(await result, "aborted@10");
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("VirtualClock.run() reports a deadlock instead of hanging", async () => {
  const clock = new VirtualClock();
  await assert.rejects(
    clock.run(() => new Promise<void>(() => {})),
    (e: unknown) => e instanceof VirtualClockError && e.code === "VIRTUAL_CLOCK_DEADLOCK",
  );
});

Deno.test("VirtualClock.advance() fires only timers due by the target", async () => {
  const clock = new VirtualClock();
  const fired: number[] = [];
  clock.sleep(50).then(() => fired.push(50));
  clock.sleep(500).then(() => fired.push(500));
  await clock.advance(100);
  assert.deepEqual(fired, [50]);
  assert.equal(clock.now(), 100);
  await clock.advance(400);
  assert.deepEqual(fired, [50, 500]);
});
