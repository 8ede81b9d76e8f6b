import assert from "node:assert/strict";
import { programsPresent, tempDir } from "../_tools.ts";
import {
  listen,
  memoryTransportPair,
  QmpClient,
  QmpConnectionError,
  QmpError,
  QmpServer,
} from "../../qmp/mod.ts";
import { startQsd, wireEmptyBlockLayer } from "./_harness.ts";

/** A server whose block-stream emits a trivial job's whole lifecycle before its reply, as qemu does. */
function fakeServer(): QmpServer {
  const server = new QmpServer();
  wireEmptyBlockLayer(server);
  server.commands.handle<{ "job-id"?: string }>("block-stream", (args, ctx) => {
    const id = args["job-id"] ?? "";
    for (const status of ["created", "running", "waiting", "pending"]) {
      ctx.emitEvent("JOB_STATUS_CHANGE", { status, id });
    }
    ctx.emitEvent("BLOCK_JOB_COMPLETED", {
      device: id,
      len: 0,
      offset: 0,
      speed: 0,
      type: "stream",
    });
    for (const status of ["concluded", "null"]) ctx.emitEvent("JOB_STATUS_CHANGE", { status, id });
  });
  return server;
}

/** What every client test checks, against whichever server. */
async function exercise(qmp: QmpClient): Promise<void> {
  assert.equal(qmp.greeting.version.qemu.major, 7);
  assert.deepEqual(qmp.greeting.capabilities, ["oob"]);
  const version = await qmp.execute<{ qemu: { major: number; minor: number } }>("query-version");
  assert.equal(version.qemu.minor, 2);
  assert.deepEqual(await qmp.execute("query-block-jobs"), []);
  await assert.rejects(qmp.execute("no-such-command"), (e) => {
    assert.ok(e instanceof QmpError);
    assert.equal(e.class, "CommandNotFound");
    assert.equal(e.desc, "The command no-such-command has not been found");
    return true;
  });
  await assert.rejects(qmp.execute("block-job-cancel", { device: "nojob" }), {
    class: "DeviceNotActive",
    desc: "Block job 'nojob' not found",
  });
  await assert.rejects(qmp.execute("block-stream", { device: "ov", speed: "fast" }), {
    class: "GenericError",
    desc: "Invalid parameter type for 'speed', expected: integer",
  });
  // Several requests in flight get their own replies.
  const all = await Promise.all([
    qmp.execute("query-jobs"),
    qmp.execute("query-version"),
    qmp.execute("query-jobs"),
  ]);
  assert.deepEqual(all[0], []);
  await assert.rejects(qmp.waitEvent("NEVER", { timeout: 30 }), QmpConnectionError);
}

/** A stream of a node with nothing to stream: every event arrives before the reply. */
async function trivialStream(qmp: QmpClient, device: string): Promise<void> {
  await qmp.execute("block-stream", { "job-id": "j", device });
  const done = await qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 5000 });
  assert.deepEqual(done.data, { device: "j", len: 0, offset: 0, speed: 0, type: "stream" });
  assert.equal(typeof done.timestamp.seconds, "number");
  const gone = await qmp.waitEvent("JOB_STATUS_CHANGE", {
    timeout: 5000,
    filter: (e) => e.data.status === "null",
  });
  assert.equal(gone.data.id, "j");
  // The iterator yields the rest in order.
  const statuses: unknown[] = [];
  for await (const e of qmp.events()) {
    statuses.push(e.data.status);
    if (e.data.status === "concluded") break;
  }
  assert.deepEqual(statuses, ["created", "running", "waiting", "pending", "concluded"]);
}

Deno.test("QmpClient works against QmpServer over an in-memory transport", async () => {
  const server = fakeServer();
  const [mine, theirs] = memoryTransportPair();
  void server.serve(theirs);
  const qmp = await QmpClient.connect({ transport: mine }, { oob: true });
  assert.equal(qmp.oobEnabled, true);
  await exercise(qmp);
  await trivialStream(qmp, "ov");
  await qmp.close();
  await assert.rejects(qmp.execute("query-jobs"), QmpConnectionError);
});

Deno.test("QmpClient works against QmpServer over a Unix socket and over TCP", async () => {
  await using dir = await tempDir();
  const server = fakeServer();
  await using unix = await listen(server, { path: `${dir.path}/q.sock` });
  assert.equal((await Deno.stat(`${dir.path}/q.sock`)).mode! & 0o777, 0o600);
  await using tcp = await listen(server, { port: 0 });
  for (const address of [unix.address, tcp.address]) {
    const qmp = await QmpClient.connect(address);
    await exercise(qmp);
    await trivialStream(qmp, "ov");
    await qmp.close();
  }
  server.close();
});

Deno.test("QmpClient rejects outstanding commands and waits when the server goes away", async () => {
  const server = new QmpServer();
  let release!: () => void;
  server.commands.handle("query-jobs", () => new Promise<void>((r) => (release = r)));
  const [mine, theirs] = memoryTransportPair();
  void server.serve(theirs);
  const qmp = await QmpClient.connect({ transport: mine });
  const pending = qmp.execute("query-jobs");
  const waiting = qmp.waitEvent("X");
  await new Promise((r) => setTimeout(r, 5));
  server.close();
  await assert.rejects(pending, QmpConnectionError);
  await assert.rejects(waiting, QmpConnectionError);
  release();
  await qmp.close();
});

Deno.test("QmpClient times out when no greeting comes", async () => {
  const [mine] = memoryTransportPair();
  await assert.rejects(QmpClient.connect({ transport: mine }, { timeout: 30 }), QmpConnectionError);
});

Deno.test({
  name: "QmpClient works against a real qemu-storage-daemon",
  ignore: !programsPresent("qemu-storage-daemon"),
  async fn() {
    await using dir = await tempDir();
    await using qsd = await startQsdWithNullNode(dir.path);
    const qmp = await QmpClient.connect({ path: qsd.path }, { oob: true });
    assert.equal(qmp.oobEnabled, true);
    await exercise(qmp);
    await trivialStream(qmp, "n0");
    await qmp.close();
  },
});

/** qemu-storage-daemon with a 1 MiB null-co node `n0` (nothing to stream). */
async function startQsdWithNullNode(dir: string) {
  const qsd = await startQsd(dir);
  const qmp = await QmpClient.connect({ path: qsd.path });
  await qmp.execute("blockdev-add", { driver: "null-co", "node-name": "n0", size: 1048576 });
  await qmp.close();
  return qsd;
}
