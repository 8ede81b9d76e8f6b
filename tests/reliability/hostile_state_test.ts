/**
 * Hostile QMP input must cost `qedstream serve` bounded memory (issue 8,
 * part 3): the heap of an in-process {@linkcode Daemon} stays flat under the
 * hostile-input generator and under distinct, long member names, and the state
 * a client may legitimately create (block nodes, undismissed jobs) has a bound
 * with a clear error when it is reached.
 *
 * The heap is measured after a full GC (`--expose-gc`, set at run time), not
 * as RSS, which V8's heap sizing and parallel tests blur.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import v8 from "node:v8";
import vm from "node:vm";
import { MAX_NODES } from "../../block/graph.ts";
import { MAX_JOBS } from "../../block/job_registry.ts";
import { parseDaemonArgs } from "../../daemon/args.ts";
import { Daemon } from "../../daemon/daemon.ts";
import { FileStorage } from "../../io/file_storage.ts";
import { QedImage } from "../../qed/image.ts";
import { memoryTransportPair } from "../../qmp/transport.ts";
import type { ByteTransport } from "../../qmp/transport.ts";
import { Random } from "../../sim/random.ts";
import { seeds, tempDir } from "../_tools.ts";
import { count, report } from "./_campaign.ts";
import { qmpInput } from "./_qmp_fuzz.ts";
import { driveBlockdevArgs } from "./_serve.ts";

const MiB = 1 << 20;

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

/** Heap in use after a full collection. */
function heapAfterGc(): number {
  gc();
  gc();
  return Deno.memoryUsage().heapUsed;
}

/** A daemon like the campaign's `serve`: a raw template and three QED overlays on it. */
async function startDaemon(dir: string): Promise<Daemon> {
  const template = join(dir, "base.raw");
  await Deno.writeFile(template, new Uint8Array(MiB).fill(9));
  const argv: string[] = [];
  for (let i = 0; i < 3; i++) {
    const path = join(dir, `d${i}.qed`);
    const storage = await FileStorage.open(path, { create: true, truncate: true });
    await QedImage.create(storage, {
      size: MiB,
      backingFile: template,
      backingFormat: "raw",
    });
    await storage.close();
    argv.push(...driveBlockdevArgs(template, path, i));
  }
  return await Daemon.start(parseDaemonArgs(argv));
}

/** A QMP session on the daemon over an in-memory pipe, read up to a marker. */
class Session {
  readonly #client: ByteTransport;
  readonly #enc = new TextEncoder();
  readonly #dec = new TextDecoder();
  #buf = "";

  private constructor(client: ByteTransport) {
    this.#client = client;
  }

  static async open(daemon: Daemon): Promise<Session> {
    const [client, end] = memoryTransportPair();
    void daemon.qmp.serve(end);
    const session = new Session(client);
    await session.until('"QMP"');
    await session.send('{"execute":"qmp_capabilities","id":"@caps"}\n', '"@caps"');
    return session;
  }

  /** Reads until the line that contains `marker`, and returns it. */
  async until(marker: string): Promise<string> {
    for (;;) {
      const at = this.#buf.indexOf(marker);
      const nl = at < 0 ? -1 : this.#buf.indexOf("\n", at);
      if (nl >= 0) {
        const line = this.#buf.slice(this.#buf.lastIndexOf("\n", at) + 1, nl);
        this.#buf = this.#buf.slice(nl + 1);
        return line;
      }
      const chunk = await this.#client.read();
      if (chunk === null) throw new Error(`the server closed the session before ${marker}`);
      this.#buf += this.#dec.decode(chunk, { stream: true });
    }
  }

  /** Writes `input`. */
  async write(input: string | Uint8Array): Promise<void> {
    await this.#client.write(typeof input === "string" ? this.#enc.encode(input) : input);
  }

  /** Writes `input` and returns the line that contains `marker`. */
  async send(input: string | Uint8Array, marker: string): Promise<string> {
    await this.write(input);
    return await this.until(marker);
  }

  /** Executes a command with an id and returns its parsed reply. */
  async execute(command: string, args: Record<string, unknown>, id: string) {
    const line = await this.send(
      JSON.stringify({ execute: command, arguments: args, id }) + "\n",
      `"id": "${id}"`,
    );
    return JSON.parse(line) as { return?: unknown; error?: { class: string; desc: string } };
  }

  close(): void {
    this.#client.close();
  }
}

Deno.test("hostile QMP input leaves the daemon's heap flat", async () => {
  await using dir = await tempDir();
  const daemon = await startDaemon(dir.path);
  const session = await Session.open(daemon);
  const dec = new TextDecoder();
  const inputs = count(10_000, 100_000);
  try {
    let sent = 0;
    // Each input is followed by a marked `query-version`, as in the campaign:
    // its answer means the input has been dealt with, whatever it was.
    const runMarked = async (rng: Random, n: number) => {
      for (let i = 0; i < n; i++) {
        const input = qmpInput(rng);
        if (dec.decode(input).includes("quit")) continue;
        await session.write(input);
        const marker = `@m-${sent++}`;
        await session.send(`\x01\n{"execute":"query-version","id":"${marker}"}\n`, `"${marker}"`);
      }
    };
    const [seed] = seeds();
    const rng = new Random(seed!);
    // Warm up (compiled code, feedback, the bucket cache's short names), then measure.
    await runMarked(rng, 2000);
    const before = heapAfterGc();
    await runMarked(rng, inputs);
    // Distinct long member names: qemu's member order is computed for each
    // (`qdictKeys`, before any other check), and none may stay in memory.
    for (let i = 0; i < 200; i++) {
      const id = `@long-${i}`;
      const name = `${i}`.padStart(8, "0") + "x".repeat(64 * 1024);
      await session.send(`{"execute":"query-version","id":"${id}","${name}":1}\n`, id);
    }
    const after = heapAfterGc();
    report("hostile QMP heap (in-process daemon)", {
      inputs,
      longNames: 200,
      heapBeforeMiB: (before / MiB).toFixed(1),
      heapAfterMiB: (after / MiB).toFixed(1),
    });
    // Before the fix, the 200 long names alone kept 12.5 MiB.
    assert.ok(after - before < 2 * MiB, `the heap grew ${after - before} bytes`);
  } finally {
    session.close();
    await daemon.close();
  }
});

Deno.test("blockdev-add refuses nodes past MAX_NODES with a clear error", async () => {
  await using dir = await tempDir();
  const daemon = await startDaemon(dir.path);
  const session = await Session.open(daemon);
  try {
    const start = daemon.graph.nodes().length;
    for (let i = start; i < MAX_NODES; i++) {
      const r = await session.execute(
        "blockdev-add",
        { driver: "null-co", "node-name": `n${i}`, size: 4096 },
        `@a${i}`,
      );
      assert.deepEqual(r.return, {}, JSON.stringify(r));
    }
    const refused = await session.execute(
      "blockdev-add",
      { driver: "null-co", "node-name": "one-too-many", size: 4096 },
      "@full",
    );
    assert.equal(refused.error?.class, "GenericError");
    assert.match(refused.error?.desc ?? "", /^Too many block nodes \(at most 4096\)/);
    assert.equal(daemon.graph.nodes().length, MAX_NODES);
    // Room again once a node is deleted.
    assert.deepEqual(
      (await session.execute("blockdev-del", { "node-name": "n20" }, "@d")).return,
      {},
    );
    const again = await session.execute(
      "blockdev-add",
      { driver: "null-co", "node-name": "one-too-many", size: 4096 },
      "@again",
    );
    assert.deepEqual(again.return, {});
  } finally {
    session.close();
    await daemon.close();
  }
});

Deno.test("block-stream refuses jobs past MAX_JOBS until concluded ones are dismissed", async () => {
  await using dir = await tempDir();
  const daemon = await startDaemon(dir.path);
  const session = await Session.open(daemon);
  const concluded = async (id: string) => {
    while (daemon.jobs.get(id)?.status !== "concluded") {
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  try {
    for (let i = 0; i < MAX_JOBS; i++) {
      const r = await session.execute(
        "block-stream",
        { device: "d0", "job-id": `j${i}`, "auto-dismiss": false },
        `@s${i}`,
      );
      assert.deepEqual(r.return, {}, JSON.stringify(r));
      await concluded(`j${i}`);
    }
    const refused = await session.execute(
      "block-stream",
      { device: "d1", "job-id": "one-too-many", "auto-dismiss": false },
      "@full",
    );
    assert.equal(refused.error?.class, "GenericError");
    assert.match(refused.error?.desc ?? "", /^Too many jobs \(at most 1024\)/);
    assert.equal(daemon.jobs.list().length, MAX_JOBS);
    assert.deepEqual((await session.execute("job-dismiss", { id: "j0" }, "@dismiss")).return, {});
    const again = await session.execute(
      "block-stream",
      { device: "d1", "job-id": "one-too-many" },
      "@again",
    );
    assert.deepEqual(again.return, {});
  } finally {
    session.close();
    await daemon.close();
  }
});
