/**
 * `startEmulator()`: drives of every template kind, monitors of every kind,
 * the guest, both clocks, faults, image inspection and a clean close. Every
 * test runs with Deno's resource and op sanitizers on (the default).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  EmulatorError,
  MemoryStorage,
  NbdServer,
  QedImage,
  QmpClient,
  RawImage,
  startEmulator,
} from "../../mod.ts";
import { programsPresent, runOk, tempDir } from "../_tools.ts";

const MIB = 1 << 20;

function pattern(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 12)) & 0xff;
  return bytes;
}

Deno.test("startEmulator() streams an in-memory drive to independence, byte-exact", async () => {
  const bytes = pattern(2 * MIB);
  await using emu = await startEmulator({
    drives: [{ name: "vm1", template: { type: "memory", bytes } }],
  });
  const drive = emu.drive("vm1");
  assert.equal(drive.backingFile, "memory:vm1");
  assert.equal(drive.independent, false);
  const qmp = await emu.connect();
  await qmp.execute("block-stream", { "job-id": "s1", device: "vm1" });
  const done = await qmp.waitEvent("BLOCK_JOB_COMPLETED");
  assert.equal(done.data.offset, bytes.length);
  assert.equal(drive.independent, true);
  assert.deepEqual(await drive.read(0, bytes.length), bytes);
  const check = await drive.check();
  assert.equal(check.corruptions, 0);
  assert.equal(check.leaks, 0);
  const map = await drive.map();
  assert.ok(map.every((e) => e.kind === "data"));
  assert.equal(map.reduce((n, e) => n + e.length, 0), bytes.length);
});

Deno.test("startEmulator() answers QMP over a Unix socket and loopback TCP", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "qmp.sock");
  const logs: string[] = [];
  await using emu = await startEmulator({
    drives: [{ name: "vm1", template: { type: "sparse", template: { size: 4 * MIB } } }],
    monitors: [{ type: "unix", path }, { type: "tcp" }],
    log: (line) => logs.push(line),
  });
  assert.deepEqual(emu.monitors[0], { path });
  const tcp = emu.monitors[1] as { hostname: string; port: number };
  assert.equal(tcp.hostname, "127.0.0.1");
  assert.ok(tcp.port > 0);
  assert.match(logs.join("\n"), /listening on tcp:127\.0\.0\.1:\d+/);
  const overUnix = await emu.connect({ monitor: 0 });
  const nodes = await overUnix.execute<{ "node-name": string }[]>("query-named-block-nodes");
  assert.deepEqual(nodes.map((n) => n["node-name"]).sort(), ["vm1", "vm1-template"]);
  // A tool connecting on its own, as it would to qemu-storage-daemon.
  const own = await QmpClient.connect({ port: tcp.port });
  await own.execute("block-stream", { "job-id": "s1", device: "vm1" });
  await own.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 20000 });
  await own.close();
  assert.equal(emu.drive("vm1").independent, true);
  await assert.rejects(() => emu.connect({ monitor: 5 }), EmulatorError);
});

Deno.test("startEmulator() with a virtual clock runs a remote stream in virtual time", async () => {
  await using emu = await startEmulator({
    clock: "virtual",
    drives: [{
      name: "vm1",
      template: {
        type: "remote",
        template: { size: 16 * MIB, bootRegionLength: 4 * MIB },
        network: { rttMs: 40, bandwidth: 10 * MIB },
      },
    }],
  });
  const qmp = await emu.connect();
  await qmp.execute("block-stream", { "job-id": "s1", device: "vm1" });
  await emu.run(() => qmp.waitEvent("BLOCK_JOB_COMPLETED"));
  const drive = emu.drive("vm1");
  assert.ok(emu.clock.now() > 400, `took ${emu.clock.now()} virtual ms`);
  assert.equal(drive.independent, true);
  assert.ok(drive.remote!.load.bytes > 0);
  assert.deepEqual(await drive.read(5 * MIB, 65536), await drive.readTemplate(5 * MIB, 65536));
  await emu.advance(1000);
  await assert.rejects(
    async () => {
      await using sys = await startEmulator();
      await sys.advance(1);
    },
    (e: unknown) => e instanceof EmulatorError && e.code === "EMULATOR_NOT_VIRTUAL",
  );
});

Deno.test("run() moves virtual time while QMP travels over a real socket", async () => {
  await using dir = await tempDir();
  await using emu = await startEmulator({
    clock: "virtual",
    monitors: [{ type: "unix", path: join(dir.path, "qmp.sock") }],
    drives: [{
      name: "vm1",
      template: { type: "remote", template: { size: 4 * MIB, bootRegionLength: MIB } },
    }],
  });
  const qmp = await emu.connect({ monitor: 0 });
  await qmp.execute("block-stream", { "job-id": "s1", device: "vm1" });
  const done = await emu.run(() => qmp.waitEvent("BLOCK_JOB_COMPLETED"));
  assert.equal(done.data.offset, 4 * MIB);
  assert.ok(emu.clock.now() > 0);
  assert.equal(emu.drive("vm1").independent, true);
});

Deno.test("startEmulator() runs a guest that checks every byte while the stream runs", async () => {
  await using emu = await startEmulator({
    clock: "virtual",
    drives: [{
      name: "vm1",
      template: { type: "remote", template: { size: 16 * MIB, bootRegionLength: 2 * MIB } },
      copyOnRead: true,
    }],
    guest: {
      drive: "vm1",
      boot: { regionLength: 2 * MIB, files: 8 },
      steady: { durationMs: 2000 },
    },
  });
  const qmp = await emu.connect();
  await emu.run(() => emu.guest!.booted);
  await qmp.execute("block-stream", { "job-id": "s1", device: "vm1" });
  const report = await emu.run(() => emu.guest!.report);
  await emu.run(() => qmp.waitEvent("BLOCK_JOB_COMPLETED"));
  assert.ok(report.reads > 0 && report.writes > 0);
  assert.equal(report.ioErrors, 0);
  const drive = emu.drive("vm1");
  // What the guest wrote, over the template: the drive must read the same.
  const expected = new Uint8Array(MIB);
  await emu.guest!.guest.expected(8 * MIB, expected);
  assert.deepEqual(await drive.read(8 * MIB, MIB), expected);
});

Deno.test("fault plans fail ranges, rates and outages and can be lifted", async () => {
  await using emu = await startEmulator({
    drives: [{
      name: "vm1",
      template: { type: "memory", bytes: pattern(MIB) },
      faults: { ranges: [{ offset: 512 * 1024, length: 4096 }] },
    }],
  });
  const drive = emu.drive("vm1");
  await drive.read(0, 4096);
  await assert.rejects(() => drive.read(512 * 1024, 512), /Input\/output error/);
  emu.injectFaults("vm1", { outage: true, error: "ENOSPC" });
  await assert.rejects(() => drive.read(0, 512), /No space left on device/);
  emu.injectFaults("vm1", { errorRate: 0.5, seed: 7 });
  let failed = 0;
  for (let i = 0; i < 40; i++) failed += await drive.read(i * 4096, 512).then(() => 0, () => 1);
  assert.ok(failed > 5 && failed < 35, `failed ${failed} of 40`);
  emu.liftFaults("vm1");
  await drive.read(512 * 1024, 4096);
  const counters = drive.backing.counters;
  assert.equal(counters.rangeErrors, 1);
  assert.equal(counters.outageErrors, 1);
  assert.equal(counters.rateErrors, failed);
  assert.throws(() => emu.injectFaults("nope", {}), /No drive named 'nope'/);
});

Deno.test("an outage window on a virtual clock fails reads only inside the window", async () => {
  await using emu = await startEmulator({
    clock: "virtual",
    drives: [{
      name: "vm1",
      template: { type: "memory", bytes: pattern(MIB) },
      faults: { outage: [{ start: 100, end: 200 }] },
    }],
  });
  const drive = emu.drive("vm1");
  await drive.read(0, 512);
  await emu.advance(150);
  await assert.rejects(() => drive.read(0, 512));
  await emu.advance(100);
  await drive.read(0, 512);
});

Deno.test("file drives: the overlay names the template's path and qemu-img can check it", async () => {
  await using dir = await tempDir();
  const base = join(dir.path, "base.raw");
  const overlay = join(dir.path, "vm1.qed");
  const bytes = pattern(MIB);
  await Deno.writeFile(base, bytes);
  {
    await using emu = await startEmulator({
      drives: [{
        name: "vm1",
        template: { type: "file", path: base },
        overlay: { type: "file", path: overlay },
      }],
    });
    assert.equal(emu.drive("vm1").backingFile, base);
    const qmp = await emu.connect();
    await qmp.execute("block-stream", { "job-id": "s1", device: "vm1" });
    await qmp.waitEvent("BLOCK_JOB_COMPLETED");
  }
  const image = await QedImage.open(new MemoryStorage(await Deno.readFile(overlay)));
  assert.equal(image.backingFile, undefined);
  const buf = new Uint8Array(bytes.length);
  await image.read(0, buf);
  assert.deepEqual(buf, bytes);
  await image.close();
  if (programsPresent("qemu-img")) await runOk("qemu-img", ["check", "-f", "qed", overlay]);
});

Deno.test("an in-memory overlay stays readable after close()", async () => {
  const storage = new MemoryStorage();
  const emu = await startEmulator({
    drives: [{
      name: "vm1",
      template: { type: "memory", bytes: pattern(MIB) },
      overlay: { type: "memory", storage },
    }],
  });
  const drive = emu.drive("vm1");
  await drive.device.write(0, new Uint8Array(4096).fill(9));
  await emu.close();
  await emu.close();
  await emu.closed;
  const image = await QedImage.open(new MemoryStorage(await drive.imageBytes()), {
    backing: await RawImage.open(new MemoryStorage(pattern(MIB))),
  });
  const buf = new Uint8Array(8192);
  await image.read(0, buf);
  assert.deepEqual(buf.subarray(0, 4096), new Uint8Array(4096).fill(9));
  assert.deepEqual(buf.subarray(4096), pattern(8192).subarray(4096));
  await image.close();
});

Deno.test("an NBD template streams over a real socket", async () => {
  await using dir = await tempDir();
  const socket = join(dir.path, "nbd.sock");
  const bytes = pattern(MIB);
  const server = new NbdServer();
  server.addExport({
    name: "base",
    readOnly: true,
    target: {
      size: bytes.length,
      read: (offset, buf) => Promise.resolve(buf.set(bytes.subarray(offset, offset + buf.length))),
      write: () => Promise.reject(new Error("read-only")),
      writeZeroes: () => Promise.reject(new Error("read-only")),
      flush: () => Promise.resolve(),
      blockStatus: (_offset, length) => Promise.resolve({ kind: "data", length }),
    },
  });
  await server.listen({ type: "unix", path: socket });
  try {
    const uri = `nbd+unix:///base?socket=${socket}`;
    await using emu = await startEmulator({
      drives: [{ name: "vm1", template: { type: "nbd", uri } }],
    });
    assert.equal(emu.drive("vm1").backingFile, uri);
    const qmp = await emu.connect();
    await qmp.execute("block-stream", { "job-id": "s1", device: "vm1" });
    await qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 20000 });
    assert.deepEqual(await emu.drive("vm1").read(0, bytes.length), bytes);
  } finally {
    await server.close();
  }
});

Deno.test("QMP quit closes the whole emulator", async () => {
  const emu = await startEmulator({
    drives: [{ name: "vm1", template: { type: "memory", bytes: pattern(MIB) } }],
  });
  const qmp = await emu.connect();
  await qmp.execute("quit");
  await emu.closed;
  await emu.close();
});

Deno.test("startEmulator() refuses bad drives and leaves nothing open", async () => {
  await assert.rejects(
    () =>
      startEmulator({
        drives: [
          { name: "vm1", template: { type: "memory", bytes: pattern(4096) } },
          { name: "vm1", template: { type: "memory", bytes: pattern(4096) } },
        ],
      }),
    /Two drives are named 'vm1'/,
  );
  await assert.rejects(
    () => startEmulator({ drives: [{ name: "9 lives", template: { type: "sparse" } }] }),
    /must start with a letter/,
  );
  await assert.rejects(
    () =>
      startEmulator({
        drives: [{ name: "vm1", template: { type: "file", path: "/nonexistent/base.raw" } }],
      }),
  );
  await assert.rejects(
    () =>
      startEmulator({
        drives: [{ name: "vm1", template: { type: "memory", bytes: pattern(4096) } }],
        guest: { drive: "vm2" },
      }),
    /drive 'vm2', which is not defined/,
  );
  await assert.rejects(
    () =>
      startEmulator({
        drives: [{ name: "vm1", template: { type: "memory", bytes: pattern(4096) } }],
        monitors: [{ type: "tcp", host: "0.0.0.0" }],
      }),
    /would accept remote clients/,
  );
});
