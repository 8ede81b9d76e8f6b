import assert from "node:assert/strict";
import { VirtualClock } from "../../sim/virtual_clock.ts";
import {
  type ByteTransport,
  genericError,
  memoryTransportPair,
  QmpError,
  QmpServer,
  type QmpServerOptions,
} from "../../qmp/mod.ts";
import { wireEmptyBlockLayer } from "./_harness.ts";

/** A test peer over an in-memory pipe that reads whole lines. */
class Peer {
  #buf = "";
  #dec = new TextDecoder();
  constructor(readonly t: ByteTransport) {}
  send(text: string | Uint8Array): Promise<void> {
    return this.t.write(typeof text === "string" ? new TextEncoder().encode(text) : text);
  }
  /** The next line (raw, with its \r\n stripped), or null at EOF. */
  async line(): Promise<string | null> {
    for (;;) {
      const nl = this.#buf.indexOf("\n");
      if (nl >= 0) {
        const l = this.#buf.slice(0, nl);
        assert.ok(l.endsWith("\r"), `line ends in \\r\\n: ${l}`);
        this.#buf = this.#buf.slice(nl + 1);
        return l.slice(0, -1);
      }
      const chunk = await this.t.read();
      if (chunk === null) return null;
      this.#buf += this.#dec.decode(chunk, { stream: true });
    }
  }
  async json(): Promise<Record<string, unknown>> {
    const l = await this.line();
    assert.notEqual(l, null, "connection closed");
    return JSON.parse(l!);
  }
}

function start(
  server: QmpServer,
  options: { capacity?: number } = {},
): { peer: Peer; done: Promise<void> } {
  const [mine, theirs] = memoryTransportPair(options);
  return { peer: new Peer(mine), done: server.serve(theirs) };
}

async function negotiated(server: QmpServer, oob = false): Promise<Peer> {
  const { peer } = start(server);
  await peer.line();
  await peer.send(
    `{"execute": "qmp_capabilities"${oob ? ', "arguments": {"enable": ["oob"]}' : ""}}`,
  );
  assert.equal(await peer.line(), '{"return": {}}');
  return peer;
}

function makeServer(options: QmpServerOptions = {}): QmpServer {
  const server = new QmpServer(options);
  wireEmptyBlockLayer(server);
  return server;
}

Deno.test("QmpServer greets like qemu-storage-daemon 7.2 and negotiates", async () => {
  const server = makeServer({ version: { micro: 22, package: "Debian 1:7.2+dfsg-7+deb12u18+b3" } });
  const { peer } = start(server);
  assert.equal(
    await peer.line(),
    '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}',
  );
  await peer.send('{"execute": "query-version", "id": 1}');
  assert.equal(
    await peer.line(),
    `{"id": 1, "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}`,
  );
  await peer.send('{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": "b"}');
  assert.equal(await peer.line(), '{"return": {}, "id": "b"}');
  await peer.send('{"execute": "qmp_capabilities", "id": "c"}');
  assert.equal(
    await peer.line(),
    '{"id": "c", "error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}',
  );
  await peer.send('{"execute": "query-version", "id": {"x": [1, 2]}}');
  assert.equal(
    await peer.line(),
    '{"return": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "id": {"x": [1, 2]}}',
  );
  peer.t.close();
});

Deno.test("QmpServer without oob offered refuses enable: [oob]", async () => {
  const server = makeServer({ offerOob: false });
  const { peer } = start(server);
  assert.match((await peer.line())!, /"capabilities": \[\]/);
  await peer.send('{"execute": "qmp_capabilities", "arguments": {"enable": ["oob", "oob"]}}');
  assert.equal(
    await peer.line(),
    '{"error": {"class": "GenericError", "desc": "Capability oob, oob not available"}}',
  );
  peer.t.close();
});

Deno.test("QmpServer sends events only to negotiated sessions, stamped by the injected clock", async () => {
  const clock = new VirtualClock({ epoch: 1795633059460659 / 1000 });
  const server = makeServer({ clock });
  const early = start(server).peer;
  await early.line();
  const a = await negotiated(server);
  const b = await negotiated(server);
  server.emitEvent("JOB_STATUS_CHANGE", { status: "created", id: "j" });
  const expected =
    '{"timestamp": {"seconds": 1795633059, "microseconds": 460659}, "event": "JOB_STATUS_CHANGE", "data": {"status": "created", "id": "j"}}';
  assert.equal(await a.line(), expected);
  assert.equal(await b.line(), expected);
  server.emitEvent("NO_DATA");
  assert.match((await a.line())!, /^\{"timestamp": \{[^}]*\}, "event": "NO_DATA"\}$/);
  // The session that has not negotiated got nothing; its next line is its own reply.
  await early.send('{"execute": "x", "id": 1}');
  assert.match((await early.line())!, /Expecting capabilities negotiation/);
  for (const p of [early, a, b]) p.t.close();
});

Deno.test("QmpServer writes events a command emits before the command's reply", async () => {
  const server = makeServer();
  server.commands.handle<{ device: string }>("block-stream", async (args, ctx) => {
    ctx.emitEvent("JOB_STATUS_CHANGE", { status: "created", id: args["job-id" as "device"] });
    await Promise.resolve();
    ctx.emitEvent("JOB_STATUS_CHANGE", { status: "running", id: args["job-id" as "device"] });
  });
  const peer = await negotiated(server);
  await peer.send(
    '{"execute": "block-stream", "arguments": {"job-id": "j", "device": "ov"}, "id": 1}',
  );
  assert.match((await peer.line())!, /"created"/);
  assert.match((await peer.line())!, /"running"/);
  assert.equal(await peer.line(), '{"return": {}, "id": 1}');
  peer.t.close();
});

Deno.test("QmpServer: a declared command without a handler does not exist", async () => {
  const server = new QmpServer();
  const peer = await negotiated(server);
  await peer.send('{"execute": "block-stream", "arguments": {"device": 1}, "id": 1}');
  assert.equal(
    await peer.line(),
    '{"id": 1, "error": {"class": "CommandNotFound", "desc": "The command block-stream has not been found"}}',
  );
  await peer.send('{"execute": "query-commands", "id": 2}');
  assert.equal(
    await peer.line(),
    '{"return": [{"name": "quit"}, {"name": "query-commands"}, {"name": "query-version"}, {"name": "qmp_capabilities"}], "id": 2}',
  );
  await peer.send('{"execute": "query-status", "id": 3}');
  assert.match((await peer.line())!, /The command query-status has not been found/);
  server.commands.handle("query-jobs", () => []);
  await peer.send('{"execute": "query-commands", "id": 4}');
  assert.match((await peer.line())!, /\{"name": "qmp_capabilities"\}, \{"name": "query-jobs"\}\]/);
  peer.t.close();
});

Deno.test("QmpServer answers query-status when asked to", async () => {
  const server = new QmpServer({ queryStatus: true });
  const peer = await negotiated(server);
  await peer.send('{"execute": "query-status"}');
  assert.deepEqual(await peer.json(), {
    return: { status: "running", singlestep: false, running: true },
  });
  peer.t.close();
});

Deno.test("QmpServer turns handler errors into QMP errors", async () => {
  const server = new QmpServer({
    mapError: (e) => e instanceof RangeError ? new QmpError("DeviceNotFound", "mapped") : undefined,
  });
  server.commands.handle("job-pause", () => {
    throw new QmpError("DeviceNotActive", "Block job 'x' not found");
  });
  server.commands.handle("job-resume", () => {
    throw new Error("plain");
  });
  server.commands.handle("job-cancel", () => Promise.reject(new RangeError("x")));
  server.commands.handle("job-complete", () => {
    throw genericError("generic");
  });
  const peer = await negotiated(server);
  for (
    const [cmd, cls, desc] of [
      ["job-pause", "DeviceNotActive", "Block job 'x' not found"],
      ["job-resume", "GenericError", "plain"],
      ["job-cancel", "DeviceNotFound", "mapped"],
      ["job-complete", "GenericError", "generic"],
    ]
  ) {
    await peer.send(`{"execute": "${cmd}", "arguments": {"id": "x"}, "id": 1}`);
    assert.deepEqual(await peer.json(), { id: 1, error: { class: cls, desc } });
  }
  peer.t.close();
});

Deno.test("QmpServer gives handlers checked arguments with defaults", async () => {
  const server = new QmpServer();
  let seen: unknown;
  server.commands.handle("block-stream", (args) => {
    seen = args;
    return {};
  });
  const peer = await negotiated(server);
  await peer.send('{"execute": "block-stream", "arguments": {"device": "ov", "job-id": "j"}}');
  await peer.line();
  assert.deepEqual(seen, {
    "job-id": "j",
    device: "ov",
    speed: 0,
    "on-error": "report",
    "auto-finalize": true,
    "auto-dismiss": true,
  });
  peer.t.close();
});

Deno.test("QmpServer without oob answers strictly in order, one request at a time", async () => {
  const server = new QmpServer();
  const order: string[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  server.commands.handle("job-pause", async () => {
    order.push("pause start");
    await gate;
    order.push("pause end");
  });
  server.commands.handle("job-resume", () => void order.push("resume"));
  const peer = await negotiated(server);
  await peer.send(
    '{"execute": "job-pause", "arguments": {"id": "a"}, "id": 1}{"execute": "job-resume", "arguments": {"id": "a"}, "id": 2}{"exec-oob": "job-resume", "id": 3}',
  );
  await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(order, ["pause start"]);
  release();
  assert.equal(await peer.line(), '{"return": {}, "id": 1}');
  assert.equal(await peer.line(), '{"return": {}, "id": 2}');
  assert.match((await peer.line())!, /"id": 3, .*QMP input member 'exec-oob' is unexpected/);
  assert.deepEqual(order, ["pause start", "pause end", "resume"]);
  peer.t.close();
});

Deno.test("QmpServer with oob answers exec-oob at once, overtaking queued requests", async () => {
  const server = new QmpServer();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  server.commands.handle("job-pause", () => gate);
  const peer = await negotiated(server, true);
  await peer.send(
    '{"execute": "job-pause", "arguments": {"id": "a"}, "id": 1}{"exec-oob": "query-version", "id": 2}',
  );
  assert.match((await peer.line())!, /"id": 2, .*The command query-version does not support OOB/);
  release();
  assert.equal(await peer.line(), '{"return": {}, "id": 1}');
  peer.t.close();
});

Deno.test("QmpServer stops reading from a session that does not read, and drops it when events pile up", async () => {
  const server = new QmpServer({ maxOutputBytes: 1 << 18 });
  const { peer: deaf, done } = start(server, { capacity: 1024 });
  await deaf.line();
  await deaf.send('{"execute": "qmp_capabilities"}');
  const good = await negotiated(server);
  // The deaf peer asks for lots of output and never reads it.
  const spam = '{"execute": "query-version", "id": "' + "x".repeat(1000) + '"}';
  let writes = 0;
  const writer = (async () => {
    try {
      for (; writes < 1000; writes++) await deaf.send(spam);
    } catch { /* dropped */ }
  })();
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(writes < 1000, "the server stopped reading the deaf session");
  assert.equal(server.sessionCount, 2);
  // Events still go to it, until its unsent output passes the bound.
  const drain = (async () => {
    while ((await good.line()) !== null) { /* discard */ }
  })();
  for (let i = 0; i < 400 && server.sessionCount === 2; i++) {
    server.emitEvent("BIG", { pad: "y".repeat(1000) });
    await new Promise((r) => setTimeout(r, 0));
  }
  await done;
  await writer;
  assert.equal(server.sessionCount, 1);
  good.t.close();
  await drain;
});

Deno.test("QmpServer refuses sessions beyond its limit with a clear error", async () => {
  const server = new QmpServer({ maxSessions: 1 });
  const first = start(server).peer;
  await first.line();
  const second = start(server);
  assert.equal(
    await second.peer.line(),
    '{"error": {"class": "GenericError", "desc": "Too many QMP sessions (at most 1), try again later"}}',
  );
  assert.equal(await second.peer.line(), null);
  await second.done;
  first.t.close();
});

Deno.test("QmpServer keeps serving other sessions while one sends garbage", async () => {
  const server = makeServer();
  const good = await negotiated(server);
  const bad = start(server).peer;
  await bad.line();
  const junk = new Uint8Array(1 << 18);
  for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919) & 0xff;
  const flood = (async () => {
    for (let i = 0; i < 4; i++) await bad.send(junk);
    await bad.send("[".repeat(5000));
  })();
  const drain = (async () => {
    while ((await bad.line()) !== null) { /* discard */ }
  })();
  for (let i = 0; i < 20; i++) {
    await good.send(`{"execute": "query-jobs", "id": ${i}}`);
    assert.equal(await good.line(), `{"return": [], "id": ${i}}`);
  }
  await flood;
  bad.t.close();
  await drain;
  good.t.close();
});

Deno.test("QmpServer: quit answers, calls onQuit and ends every session", async () => {
  let quit = 0;
  const server = new QmpServer({ onQuit: () => quit++ });
  const other = await negotiated(server);
  const peer = await negotiated(server);
  await peer.send('{"execute": "quit", "id": "q"}');
  assert.equal(await peer.line(), '{"return": {}, "id": "q"}');
  assert.equal(await peer.line(), null);
  assert.equal(await other.line(), null);
  assert.equal(quit, 1);
});

Deno.test("QmpServer answers an unsendable handler result with an error and keeps the session", async () => {
  const server = new QmpServer();
  server.commands.handle("query-jobs", () => ({ bad: () => 1 }));
  server.commands.handle("query-block", () => []);
  const peer = await negotiated(server);
  await peer.send('{"execute": "query-jobs", "id": 1}{"execute": "query-block", "id": 2}');
  const err = await peer.json();
  assert.equal(err.id, 1);
  assert.match((err.error as { desc: string }).desc, /^Internal error: /);
  assert.equal(await peer.line(), '{"return": [], "id": 2}');
  peer.t.close();
});

Deno.test("QmpServer survives a byte that completes two messages with a full oob queue (qemu 7.2 aborts)", async () => {
  const server = new QmpServer();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  server.commands.handle("job-pause", () => gate);
  const peer = await negotiated(server, true);
  await peer.send(
    '{"execute": "job-pause", "arguments": {"id": "a"}, "id": 0}' + "1 ".repeat(6) + "1\x01",
  );
  release();
  assert.equal(await peer.line(), '{"return": {}, "id": 0}');
  for (let i = 0; i < 7; i++) assert.match((await peer.line())!, /QMP input must be a JSON object/);
  assert.match((await peer.line())!, /stray '\\u0001'/);
  await peer.send('{"execute": "query-version", "id": 9}');
  assert.match((await peer.line())!, /"id": 9\}$/);
  peer.t.close();
});
