import assert from "node:assert/strict";
import { Guest, type GuestDisk, GuestMismatchError } from "../../sim/guest.ts";
import { SparseTemplate } from "../../sim/sparse_template.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";

const MIB = 1024 * 1024;

/** A disk in memory holding the template's bytes, each I/O taking 1 ms. */
function memoryDisk(
  clock: VirtualClock,
  template: SparseTemplate,
): GuestDisk & { bytes: Uint8Array } {
  const bytes = new Uint8Array(template.size);
  template.readSync(0, bytes);
  return {
    bytes,
    async read(offset, buf) {
      await clock.sleep(1);
      buf.set(bytes.subarray(offset, offset + buf.length));
    },
    async write(offset, data) {
      await clock.sleep(1);
      bytes.set(data, offset);
    },
    async flush() {
      await clock.sleep(1);
    },
  };
}

function makeGuest(clock: VirtualClock, template: SparseTemplate, seed = 1) {
  return new Guest({
    clock,
    seed,
    size: template.size,
    reference: (o, b) => template.readSync(o, b),
    dataRegions: template.extents,
    boot: { regionLength: 2 * MIB, files: 30 },
    steady: { durationMs: 2000, queueDepth: 3 },
  });
}

Deno.test("Guest boots, then runs its mix, timing every I/O and repeating exactly for a seed", async () => {
  const template = new SparseTemplate({ size: 32 * MIB, bootRegionLength: 4 * MIB, seed: 3 });
  const once = async () => {
    const clock = new VirtualClock();
    const guest = makeGuest(clock, template);
    const report = await clock.run(() => guest.run(memoryDisk(clock, template)));
    return report;
  };
  const r = await once();
  assert.equal(r.startedAt, 0);
  assert.equal(r.firstIoDoneAt, 1);
  assert.ok(r.bootDoneAt > 0 && r.bootDoneAt < r.finishedAt);
  assert.ok(r.finishedAt >= 2000);
  assert.ok(r.reads > 50 && r.writes > 10 && r.flushes > 0, JSON.stringify(r.reads));
  assert.ok(r.samples.every((s) => s.latencyMs >= 1));
  assert.equal(r.samples.filter((s) => s.phase === "boot").length, 8 + 30);
  assert.deepEqual(await once(), r);
});

Deno.test("Guest reads back its own writes and fails on the first wrong byte with its offset", async () => {
  const template = new SparseTemplate({ size: 32 * MIB, bootRegionLength: 4 * MIB, seed: 3 });
  const clock = new VirtualClock();
  const disk = memoryDisk(clock, template);
  const bad = 1 * MIB + 12345;
  disk.bytes[bad] = disk.bytes[bad]! ^ 0x40;
  const guest = makeGuest(clock, template);
  await assert.rejects(
    clock.run(() => guest.run(disk)),
    (e: GuestMismatchError) => e instanceof GuestMismatchError && e.offset === bad,
  );
});

Deno.test("Guest retries a failed I/O and counts the error", async () => {
  const template = new SparseTemplate({ size: 32 * MIB, bootRegionLength: 4 * MIB, seed: 3 });
  const clock = new VirtualClock();
  const disk = memoryDisk(clock, template);
  let failures = 3;
  const flaky: GuestDisk = {
    read: (o, b) => failures-- > 0 ? Promise.reject(new Error("EIO")) : disk.read(o, b),
    write: (o, d) => disk.write(o, d),
    flush: () => disk.flush(),
  };
  const guest = makeGuest(clock, template);
  const r = await clock.run(() => guest.run(flaky));
  assert.equal(r.ioErrors, 3);
  // The model matches the disk: the guest's writes landed where it thinks.
  const want = new Uint8Array(template.size);
  await guest.expected(0, want);
  assert.ok(want.every((v, i) => v === disk.bytes[i]));
});
