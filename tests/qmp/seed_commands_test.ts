import assert from "node:assert/strict";
import { BlockGraph } from "../../block/graph.ts";
import { JobRegistry } from "../../block/job_registry.ts";
import type { BlockNode } from "../../block/node.ts";
import { qedNode } from "../../block/qed_node.ts";
import { sourceNode } from "../../block/source_node.ts";
import { systemClock } from "../../io/clock.ts";
import { MemoryStorage } from "../../io/memory_storage.ts";
import { QedImage } from "../../qed/image.ts";
import {
  memoryTransportPair,
  QmpClient,
  QmpError,
  QmpServer,
  registerBlockCommands,
} from "../../qmp/mod.ts";

const MiB = 1 << 20;
const SIZE = 4 * MiB;

/** A gate a backing read can be held at. */
class Gate {
  #open = true;
  #waiters: (() => void)[] = [];
  close(): void {
    this.#open = false;
  }
  open(): void {
    this.#open = true;
    for (const w of this.#waiters.splice(0)) w();
  }
  pass(): Promise<void> {
    return this.#open ? Promise.resolve() : new Promise((r) => this.#waiters.push(r));
  }
}

/** A QED overlay `name` over a patterned 4 MiB base whose reads pass `gate`. */
async function overlay(graph: BlockGraph, name: string, gate: Gate): Promise<BlockNode> {
  const base = sourceNode({
    size: SIZE,
    async read(offset, buf) {
      await gate.pass();
      for (let i = 0; i < buf.length; i++) buf[i] = ((offset + i) >> 16) & 0xff;
    },
  }, { nodeName: `${name}-base`, driver: "raw", filename: `${name}-base.raw` });
  const storage = new MemoryStorage();
  await QedImage.create(storage, {
    size: SIZE,
    backingFile: `${name}-base.raw`,
    backingFormat: "raw",
  });
  const image = await QedImage.open(storage);
  graph.addNode(base);
  return graph.addNode(qedNode(image, { nodeName: name, filename: `${name}.qed`, backing: base }));
}

async function setup() {
  const graph = new BlockGraph();
  const jobs = new JobRegistry();
  const gate = new Gate();
  const ov = await overlay(graph, "ov", gate);
  const ov2 = await overlay(graph, "ov2", gate);
  const server = new QmpServer();
  const off = registerBlockCommands(server, { graph, jobs, clock: systemClock });
  const [mine, theirs] = memoryTransportPair();
  void server.serve(theirs);
  const qmp = await QmpClient.connect({ transport: mine });
  return {
    graph,
    jobs,
    gate,
    ov,
    ov2,
    qmp,
    async [Symbol.asyncDispose]() {
      gate.open();
      for (const job of jobs.list()) {
        try {
          job.cancel({ force: true });
        } catch { /* finished */ }
      }
      await Promise.all(jobs.list().map((j) => j.concluded));
      await qmp.close();
      server.close();
      off();
    },
  };
}

async function refused(p: Promise<unknown>, errorClass: string, desc: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof QmpError, String(e));
    assert.equal(e.class, errorClass);
    assert.equal(e.desc, desc);
    return true;
  });
}

async function assertStreamed(node: BlockNode): Promise<void> {
  const image = (node as BlockNode & { image: QedImage }).image;
  assert.equal(node.backing, null);
  assert.equal(image.backingFile, undefined);
  const buf = new Uint8Array(SIZE);
  await node.read(0, buf);
  for (let i = 0; i < SIZE; i += 65536) assert.equal(buf[i], (i >> 16) & 0xff, `byte at ${i}`);
}

Deno.test("query-commands lists the seed era's block_stream and query-block-stream", async () => {
  await using t = await setup();
  const names = (await t.qmp.execute<{ name: string }[]>("query-commands")).map((c) => c.name);
  assert.ok(names.includes("block_stream"));
  assert.ok(names.includes("query-block-stream"));
  assert.ok(names.includes("block-stream"));
});

Deno.test("block_stream streams one piece per call from the saved position, then completes", async () => {
  await using t = await setup();
  const first = await t.qmp.execute("block_stream", { device: "ov" });
  assert.deepEqual(first, { device: "ov", offset: 512 * 1024, len: SIZE });
  assert.deepEqual(await t.qmp.execute("query-block-stream"), [
    { device: "ov", offset: 512 * 1024, len: SIZE },
  ]);
  const at = await t.qmp.execute("block_stream", { device: "ov", offset: 2 * MiB });
  assert.deepEqual(at, { device: "ov", offset: 2.5 * MiB, len: SIZE });
  let reply = at as { offset: number; len: number };
  // The saved position moved on; go back to fill the gap, then to the end.
  reply = await t.qmp.execute("block_stream", { device: "ov", offset: 512 * 1024 });
  while (reply.offset < reply.len) reply = await t.qmp.execute("block_stream", { device: "ov" });
  const done = await t.qmp.waitEvent("BLOCK_STREAM_COMPLETED", { timeout: 5000 });
  assert.deepEqual(done.data, { device: "ov", offset: SIZE, len: SIZE });
  assert.deepEqual(await t.qmp.execute("query-block-stream"), []);
  await assertStreamed(t.ov);
  assert.deepEqual(t.jobs.queryJobs(), []);
});

Deno.test("block_stream all: true streams in the background as a job named after the device", async () => {
  await using t = await setup();
  t.gate.close();
  assert.deepEqual(await t.qmp.execute("block_stream", { device: "ov2", all: true }), {});
  const [job] = await t.qmp.execute<{ device: string; type: string }[]>("query-block-jobs");
  assert.equal(job?.device, "ov2");
  assert.deepEqual(await t.qmp.execute("query-block-stream"), [
    { device: "ov2", offset: 0, len: SIZE },
  ]);
  await refused(
    t.qmp.execute("block_stream", { device: "ov2" }),
    "DeviceInUse",
    "Device 'ov2' is in use",
  );
  await refused(
    t.qmp.execute("block_stream", { device: "ov2", all: true }),
    "DeviceInUse",
    "Device 'ov2' is in use",
  );
  t.gate.open();
  const done = await t.qmp.waitEvent("BLOCK_STREAM_COMPLETED", { timeout: 5000 });
  assert.deepEqual(done.data, { device: "ov2", offset: SIZE, len: SIZE });
  assert.deepEqual(await t.qmp.execute("query-block-stream"), []);
  await assertStreamed(t.ov2);
});

Deno.test("block_stream stop: true stops a background stream; no completion event follows", async () => {
  await using t = await setup();
  await refused(
    t.qmp.execute("block_stream", { device: "ov", stop: true }),
    "DeviceNotActive",
    "Device 'ov' has not been activated",
  );
  t.gate.close();
  await t.qmp.execute("block_stream", { device: "ov", all: true });
  setTimeout(() => t.gate.open(), 50);
  assert.deepEqual(await t.qmp.execute("block_stream", { device: "ov", stop: true }), {});
  assert.deepEqual(await t.qmp.execute("query-block-stream"), []);
  assert.deepEqual(await t.qmp.execute("query-block-jobs"), []);
  assert.ok(t.ov.backing !== null, "a stopped stream keeps the backing link");
  assert.ok(
    !t.qmp.takeEvents().some((e) => e.event === "BLOCK_STREAM_COMPLETED"),
    "no BLOCK_STREAM_COMPLETED after stop",
  );
});

Deno.test("block_stream refuses like the seed era: unknown device, busy node, bad combinations", async () => {
  await using t = await setup();
  await refused(
    t.qmp.execute("block_stream", { device: "nope" }),
    "DeviceNotFound",
    "Device 'nope' not found",
  );
  t.gate.close();
  await t.qmp.execute("block-stream", { "job-id": "j", device: "ov", speed: 1 });
  await refused(
    t.qmp.execute("block_stream", { device: "ov" }),
    "DeviceInUse",
    "Device 'ov' is in use",
  );
  await refused(
    t.qmp.execute("block_stream", { device: "ov2-base" }),
    "NotSupported",
    "Operation is not supported",
  );
  await refused(
    t.qmp.execute("block_stream", { device: "ov2", all: true, stop: true }),
    "GenericError",
    "'all' and 'stop' cannot be specified at the same time",
  );
  await refused(
    t.qmp.execute("block_stream", { device: "ov2", all: true, offset: 0 }),
    "GenericError",
    "'offset' cannot be specified with 'all' or 'stop'",
  );
  await refused(
    t.qmp.execute("block_stream", { device: "ov2", offset: -1 }),
    "GenericError",
    "Offset -1 is outside the device's 4194304 bytes",
  );
  t.gate.open();
  await t.qmp.execute("job-cancel", { id: "j" });
});

Deno.test("block-stream waits for a trivial job with auto-finalize false in pending", async () => {
  await using t = await setup();
  await t.qmp.execute("block_stream", { device: "ov2", all: true });
  await t.qmp.waitEvent("BLOCK_STREAM_COMPLETED", { timeout: 5000 });
  t.qmp.takeEvents();
  await t.qmp.execute("block-stream", { "job-id": "j", device: "ov2", "auto-finalize": false });
  const statuses = t.qmp.takeEvents().map((e) => e.data.status ?? e.event);
  assert.deepEqual(statuses, ["created", "running", "waiting", "pending", "BLOCK_JOB_PENDING"]);
  await t.qmp.execute("job-finalize", { id: "j" });
  assert.deepEqual(t.qmp.takeEvents().map((e) => e.data.status ?? e.event), [
    "BLOCK_JOB_COMPLETED",
    "concluded",
    "null",
  ]);
});
