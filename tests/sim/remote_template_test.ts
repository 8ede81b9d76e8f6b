import assert from "node:assert/strict";
import { RemoteError, RemoteTemplate, type TemplateSource } from "../../sim/remote_template.ts";
import { SparseTemplate } from "../../sim/sparse_template.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";

const MB = 1_000_000;
const MIB = 1024 * 1024;

/** A source of `size` bytes where byte i is i & 0xff. */
function counting(size: number): TemplateSource {
  return {
    size,
    read(offset, buf) {
      for (let i = 0; i < buf.length; i++) buf[i] = (offset + i) & 0xff;
      return Promise.resolve();
    },
  };
}

const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-6, `${a} != ${b}`);

Deno.test("RemoteTemplate: a read costs one round trip plus its transfer, and returns the bytes", async () => {
  const clock = new VirtualClock();
  const repo = new RemoteTemplate(counting(4 * MB), { clock, rttMs: 20, bandwidth: 10 * MB });
  const vm = repo.connect("vm");
  const buf = new Uint8Array(MB);
  await clock.run(() => vm.read(1000, buf));
  close(clock.now(), 120);
  assert.equal(buf[0], 1000 & 0xff);
  assert.deepEqual(vm.counters, {
    readRequests: 1,
    statusRequests: 0,
    bytes: MB,
    errors: 0,
    queuedMs: 0,
  });
  assert.equal(vm.driver, "sim-remote");
  assert.equal(vm.readOnly, true);
  await assert.rejects(vm.write(0, new Uint8Array(1)), RemoteError);
});

Deno.test("RemoteTemplate: clients share the link fairly; one client's replies arrive in order", async () => {
  const clock = new VirtualClock();
  const repo = new RemoteTemplate(counting(8 * MB), { clock, rttMs: 20, bandwidth: 10 * MB });
  const a = repo.connect("a");
  const b = repo.connect("b");
  const ends: Record<string, number> = {};
  await clock.run(() =>
    Promise.all([
      a.read(0, new Uint8Array(MB)).then(() => ends.a1 = clock.now()),
      b.read(0, new Uint8Array(MB)).then(() => ends.b1 = clock.now()),
    ])
  );
  // Two connections at once: each gets half the link.
  close(ends.a1!, 220);
  close(ends.b1!, 220);
  const clock2 = new VirtualClock();
  const repo2 = new RemoteTemplate(counting(8 * MB), {
    clock: clock2,
    rttMs: 20,
    bandwidth: 10 * MB,
  });
  const c = repo2.connect("c");
  await clock2.run(() =>
    Promise.all([
      c.read(0, new Uint8Array(MB)).then(() => ends.c1 = clock2.now()),
      c.read(MB, new Uint8Array(MB)).then(() => ends.c2 = clock2.now()),
    ])
  );
  // One connection: the second reply follows the first at the full rate.
  close(ends.c1!, 120);
  close(ends.c2!, 220);
  assert.equal(repo.load.bytes, 2 * MB);
  assert.equal(repo.load.peakInFlight, 2);
});

Deno.test("RemoteTemplate: requests beyond maxInFlight wait in a queue", async () => {
  const clock = new VirtualClock();
  const repo = new RemoteTemplate(counting(8 * MB), {
    clock,
    rttMs: 20,
    bandwidth: 10 * MB,
    maxInFlight: 1,
  });
  const a = repo.connect("a");
  const b = repo.connect("b");
  const ends: number[] = [];
  await clock.run(() =>
    Promise.all([
      a.read(0, new Uint8Array(MB)).then(() => ends.push(clock.now())),
      b.read(0, new Uint8Array(MB)).then(() => ends.push(clock.now())),
    ])
  );
  // b arrives at 10 ms, gets the slot when a's transfer ends at 110 ms.
  close(ends[0]!, 120);
  close(ends[1]!, 220);
  close(b.counters.queuedMs, 100);
  assert.equal(repo.load.peakQueued, 1);
  assert.equal(repo.load.peakInFlight, 1);
});

Deno.test("RemoteTemplate: injected errors follow the seed, cost a round trip, and are counted", async () => {
  const pattern = async () => {
    const clock = new VirtualClock();
    const repo = new RemoteTemplate(counting(MB), {
      clock,
      rttMs: 10,
      faults: { errorRate: 0.3, seed: 5 },
    });
    const vm = repo.connect("vm");
    const out: string[] = [];
    await clock.run(async () => {
      for (let i = 0; i < 40; i++) {
        const t = clock.now();
        try {
          await vm.read(0, new Uint8Array(512));
          out.push("ok");
        } catch (e) {
          assert.ok(e instanceof RemoteError);
          assert.equal(e.code, "REMOTE_IO_ERROR");
          close(clock.now() - t, 10);
          out.push("err");
        }
      }
    });
    return { out, errors: vm.counters.errors };
  };
  const first = await pattern();
  assert.deepEqual(await pattern(), first);
  const errs = first.out.filter((x) => x === "err").length;
  assert.equal(first.errors, errs);
  assert.ok(errs > 4 && errs < 25, `${errs} errors`);
});

Deno.test("RemoteTemplate: outages fail requests and slow periods stretch latency", async () => {
  const clock = new VirtualClock();
  const repo = new RemoteTemplate(counting(MB), {
    clock,
    rttMs: 20,
    bandwidth: 1e12,
    faults: {
      outages: [{ start: 100, end: 200 }],
      slowPeriods: [{ start: 300, end: 400, latencyFactor: 5 }],
    },
  });
  const vm = repo.connect("vm");
  await clock.run(async () => {
    await vm.read(0, new Uint8Array(100));
    await clock.sleep(100 - clock.now());
    await assert.rejects(
      vm.read(0, new Uint8Array(100)),
      (e: RemoteError) => e.code === "REMOTE_UNAVAILABLE",
    );
    await clock.sleep(300 - clock.now());
    const t = clock.now();
    await vm.read(0, new Uint8Array(100));
    assert.ok(clock.now() - t > 99, `slow read took ${clock.now() - t} ms`);
    await clock.sleep(500 - clock.now());
    const t2 = clock.now();
    await vm.read(0, new Uint8Array(100));
    assert.ok(clock.now() - t2 < 21);
  });
  assert.equal(vm.counters.errors, 1);
});

Deno.test("RemoteNode.blockStatus() answers from one reply per window", async () => {
  const clock = new VirtualClock();
  const template = new SparseTemplate({ size: 512 * MIB, bootRegionLength: 8 * MIB, seed: 4 });
  const repo = new RemoteTemplate(template, { clock, rttMs: 20, statusLookahead: 256 * MIB });
  const vm = repo.connect("vm");
  await clock.run(async () => {
    for (let at = 0; at < template.size;) {
      const st = await vm.blockStatus(at, 512 * 1024);
      const want = template.statusSync(at, 512 * 1024);
      assert.equal(st.kind, want.kind);
      // A run may end early at the edge of a window, never late.
      assert.ok(st.length > 0 && st.length <= want.length);
      at += st.length;
    }
  });
  // Two 256 MiB windows: two round trips for hundreds of queries.
  assert.equal(vm.counters.statusRequests, 2);
  close(clock.now(), 40);
});

Deno.test("RemoteTemplate counts bytes per client and over time", async () => {
  const clock = new VirtualClock();
  const repo = new RemoteTemplate(counting(10 * MB), {
    clock,
    rttMs: 0,
    bandwidth: MB,
    loadBinMs: 1000,
  });
  const a = repo.connect("a");
  const b = repo.connect("b");
  await clock.run(async () => {
    await a.read(0, new Uint8Array(MB / 2));
    await b.read(0, new Uint8Array(MB));
  });
  assert.equal(a.counters.bytes, MB / 2);
  assert.equal(b.counters.bytes, MB);
  assert.deepEqual(repo.load.bytesPerBin, [MB / 2, MB]);
  assert.throws(() => repo.connect("a"), RemoteError);
});

Deno.test("RemoteTemplate serves a QED image: its bytes, and its unallocated clusters as holes", async () => {
  const { MemoryStorage } = await import("../../io/memory_storage.ts");
  const { QedImage } = await import("../../qed/image.ts");
  const storage = new MemoryStorage();
  await QedImage.create(storage, { size: 16 * MIB });
  const image = await QedImage.open(storage);
  await image.write(MIB, new Uint8Array(65536).fill(0xab));
  const clock = new VirtualClock();
  const repo = new RemoteTemplate(image, { clock, rttMs: 10 });
  const vm = repo.connect("vm");
  await clock.run(async () => {
    assert.deepEqual(await vm.blockStatus(0, 16 * MIB), { kind: "unallocated", length: MIB });
    assert.deepEqual(await vm.blockStatus(MIB, 16 * MIB), { kind: "data", length: 65536 });
    const buf = new Uint8Array(8);
    await vm.read(MIB + 65536 - 4, buf);
    assert.deepEqual([...buf], [0xab, 0xab, 0xab, 0xab, 0, 0, 0, 0]);
  });
  assert.equal(vm.counters.statusRequests, 1);
});
