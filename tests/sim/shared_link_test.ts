import assert from "node:assert/strict";
import { SharedLink } from "../../sim/shared_link.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-6, `${a} != ${b}`);

Deno.test("SharedLink: one transfer takes bytes / bandwidth", async () => {
  const clock = new VirtualClock();
  const link = new SharedLink({ clock, bandwidth: 1_000_000 });
  await clock.run(() => link.transfer(250_000));
  close(clock.now(), 250);
  assert.equal(link.bytesCarried, 250_000);
});

Deno.test("SharedLink: concurrent transfers share the bandwidth fairly", async () => {
  const clock = new VirtualClock();
  const link = new SharedLink({ clock, bandwidth: 1_000_000 });
  const ends: number[] = [];
  await clock.run(async () => {
    const a = link.transfer(100_000).then(() => ends.push(clock.now()));
    await clock.sleep(50); // a has sent 50 kB alone
    const b = link.transfer(100_000).then(() => ends.push(clock.now()));
    await Promise.all([a, b]);
  });
  // Then both at 500 kB/s: a's last 50 kB take 100 ms; b's remaining 50 kB take 50 ms alone.
  close(ends[0]!, 150);
  close(ends[1]!, 200);
});

Deno.test("SharedLink: a slow period divides the bandwidth while it lasts", async () => {
  const clock = new VirtualClock();
  const link = new SharedLink({
    clock,
    bandwidth: 1_000_000,
    factorAt: (now) =>
      now < 100
        ? { factor: 1, until: 100 }
        : now < 300
        ? { factor: 0.25, until: 300 }
        : { factor: 1, until: Infinity },
  });
  await clock.run(() => link.transfer(300_000));
  // 100 kB in the first 100 ms, 50 kB in the slow 200 ms, the last 150 kB in 150 ms.
  close(clock.now(), 450);
});
