/**
 * The machinery of the re-expressed iotest 030: a server started from a
 * qemu-storage-daemon command line (`qemu-storage-daemon` itself, or
 * `qedstream serve` as a child process with the very same arguments), a
 * QMP client in the style of qemu's iotests (`qmp()` returns the reply,
 * events queue up for `eventWait()`), and helpers for images made with
 * qemu-img / qemu-io.
 *
 * Each scenario runs once per server ({@linkcode iotest}); every run records
 * a normalised transcript, and where the scenario is deterministic the
 * transcripts of both servers must be identical.
 *
 * @module
 */

import assert from "node:assert/strict";
import { programsPresent, run, runOk, tempDir } from "../_tools.ts";
import { normalise, RawConnection } from "../qmp/_harness.ts";

/** Which server a run talks to. */
export type ServerKind = "qsd" | "qedstream";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** Whether the qemu tools the images need are installed. */
export const QEMU_TOOLS = programsPresent("qemu-img", "qemu-io");

/**
 * The servers to run against: qedstream always, qemu-storage-daemon where
 * installed; `IOTEST_SERVERS=qsd` or `=qedstream` runs one only.
 */
export const SERVERS: ServerKind[] =
  (programsPresent("qemu-storage-daemon")
    ? ["qsd", "qedstream"] as ServerKind[]
    : ["qedstream"] as ServerKind[]).filter((k) =>
      (Deno.env.get("IOTEST_SERVERS") ?? k).split(",").includes(k)
    );

/** A QMP message as parsed. */
// deno-lint-ignore no-explicit-any
export type Msg = Record<string, any>;

/** A running server with one QMP connection. */
export class Vm {
  readonly kind: ServerKind;
  readonly dir: string;
  /** Every line, normalised (`$DIR`, timestamps, automatic node names), in arrival order. */
  readonly transcript: string[] = [];
  /** Every event received, in order. */
  readonly events: Msg[] = [];
  #queue: Msg[] = [];
  #conn!: RawConnection;
  #child: Deno.ChildProcess;
  #status: Promise<Deno.CommandStatus>;
  #stderr: Promise<string>;
  #stopped = false;

  private constructor(kind: ServerKind, dir: string, child: Deno.ChildProcess) {
    this.kind = kind;
    this.dir = dir;
    this.#child = child;
    this.#status = child.status;
    this.#stderr = new Response(child.stderr).text();
  }

  /**
   * Starts `kind` with qemu-storage-daemon's `--blockdev` options (`$DIR`
   * replaced by `dir`) and one monitor, connects and negotiates.
   */
  static async start(
    kind: ServerKind,
    dir: string,
    blockdevs: string[],
    extra: string[] = [],
  ): Promise<Vm> {
    const path = `${dir}/${kind}.sock`;
    const args = [
      ...blockdevs.flatMap((b) => ["--blockdev", b.split("$DIR").join(dir)]),
      ...extra.map((a) => a.split("$DIR").join(dir)),
      "--chardev",
      `socket,id=m0,path=${path},server=on,wait=off`,
      "--monitor",
      "chardev=m0",
    ];
    const command = kind === "qsd"
      ? new Deno.Command("qemu-storage-daemon", { args, stdout: "null", stderr: "piped" })
      : new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", CLI, "serve", ...args],
        stdout: "null",
        stderr: "piped",
      });
    const vm = new Vm(kind, dir, command.spawn());
    let exited = false;
    vm.#status.then(() => exited = true);
    const deadline = Date.now() + 20000;
    for (;;) {
      try {
        vm.#conn = await RawConnection.open(path);
        break;
      } catch (e) {
        if (exited) throw new Error(`${kind} exited: ${await vm.#stderr}`);
        if (Date.now() > deadline) {
          await vm.stop();
          throw e;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    await vm.#read(); // greeting
    const caps = await vm.qmp("qmp_capabilities");
    assert.deepEqual(caps, { return: {} });
    return vm;
  }

  async #read(ms = 30000, record = true): Promise<Msg> {
    const line = await this.#conn.line(ms);
    if (line === null) {
      throw new Error(`${this.kind}: no message within ${ms} ms; so far:\n${this.log()}`);
    }
    const msg = JSON.parse(line);
    // Events always go into the transcript; a quiet command's reply does not.
    if (record || !("return" in msg || "error" in msg)) this.transcript.push(this.normalise(line));
    return msg;
  }

  /** Replaces the folder, automatic node names, timestamps and versions. */
  normalise(line: string): string {
    return normalise(line).split(this.dir).join("$DIR").replace(/#block\d+/g, "#block");
  }

  /** Sends a command; returns its reply (`return` or `error`); events on the way are queued. */
  async qmp(execute: string, args?: Record<string, unknown>): Promise<Msg> {
    return await this.#command(execute, args, true);
  }

  /** Like {@linkcode Vm.qmp}, but the command and its reply stay out of the transcript (polling). */
  async qmpQuiet(execute: string, args?: Record<string, unknown>): Promise<Msg> {
    return await this.#command(execute, args, false);
  }

  async #command(execute: string, args: Record<string, unknown> | undefined, record: boolean) {
    const cmd = { execute, ...(args ? { arguments: args } : {}) };
    const text = JSON.stringify(cmd).split("$DIR").join(this.dir);
    if (record) this.transcript.push("-> " + JSON.stringify(cmd));
    await this.#conn.send(text + "\n");
    for (;;) {
      const msg = await this.#read(30000, record);
      if ("return" in msg || "error" in msg) return msg;
      this.#event(msg);
    }
  }

  /** Polls `query-block-jobs` (out of the transcript) until `done` holds for job `id`. */
  async pollJob(id: string, done: (job: Msg) => boolean, ms = 20000): Promise<void> {
    const deadline = Date.now() + ms;
    for (;;) {
      const jobs = (await this.qmpQuiet("query-block-jobs")).return as Msg[];
      const job = jobs.find((j) => j.device === id);
      if (job && done(job)) return;
      if (Date.now() > deadline) throw new Error(`${this.kind}: job ${id} never got there`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  #event(msg: Msg): void {
    this.events.push(msg);
    this.#queue.push(msg);
  }

  /** Waits for (and takes) the first queued or future event `name` whose data has the members of `data`. */
  async eventWait(name: string, data: Msg = {}, ms = 30000): Promise<Msg> {
    const matches = (m: Msg) =>
      m.event === name &&
      Object.entries(data).every(([k, v]) => JSON.stringify(m.data?.[k]) === JSON.stringify(v));
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.#queue.findIndex(matches);
      if (i >= 0) return this.#queue.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`${this.kind}: no ${name} ${JSON.stringify(data)}\n${this.log()}`);
      }
      this.#event(await this.#read(left));
    }
  }

  /** Waits for the `BLOCK_JOB_COMPLETED` or `_CANCELLED` event of job `id`, then for its `null`. */
  async waitJobEnd(id: string, ms = 30000): Promise<Msg> {
    const deadline = Date.now() + ms;
    const isEnd = (m: Msg) =>
      (m.event === "BLOCK_JOB_COMPLETED" || m.event === "BLOCK_JOB_CANCELLED") &&
      m.data?.device === id;
    for (;;) {
      const i = this.#queue.findIndex(isEnd);
      if (i >= 0) {
        const event = this.#queue.splice(i, 1)[0]!;
        await this.eventWait("JOB_STATUS_CHANGE", { status: "null", id }, ms);
        return event;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.kind}: job ${id} did not end\n${this.log()}`);
      this.#event(await this.#read(left));
    }
  }

  /** The job events (status changes and block-job events) of `id`, as `name[:status]` strings, in order. */
  jobEvents(id: string): string[] {
    return this.events
      .filter((e) => e.data?.id === id || e.data?.device === id)
      .map((e) =>
        e.event === "JOB_STATUS_CHANGE"
          ? `${e.data.status}`
          : e.event === "BLOCK_JOB_ERROR"
          ? `${e.event}:${e.data.operation}:${e.data.action}`
          : e.event
      );
  }

  /** `query-block-jobs`' return value. */
  async jobs(): Promise<Msg[]> {
    return (await this.qmp("query-block-jobs")).return as Msg[];
  }

  /** Asserts no job exists. */
  async assertNoJobs(): Promise<void> {
    assert.deepEqual(await this.jobs(), [], `${this.kind}: jobs left`);
  }

  /** The transcript, for failure messages. */
  log(): string {
    return this.transcript.slice(-40).join("\n");
  }

  /** Stops the server (images flushed and closed); idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#conn?.close();
    try {
      this.#child.kill("SIGTERM");
    } catch { /* exited */ }
    await this.#status;
    await this.#stderr;
  }
}

/** Asserts a reply is an error with this `desc` (and class, default `GenericError`). */
export function assertError(reply: Msg, desc: string, errorClass = "GenericError"): void {
  assert.deepEqual(reply.error, { class: errorClass, desc }, JSON.stringify(reply));
}

/** Asserts a reply is `{"return": {}}`. */
export function assertOk(reply: Msg): void {
  assert.deepEqual(reply, { return: {} });
}

/** `qemu-io -c map` of an image, with the folder replaced (qemu's allocation map). */
export async function ioMap(path: string, format = "qed"): Promise<string> {
  return (await runOk("qemu-io", ["-f", format, "-r", "-U", "-c", "map", path]))
    .split(path).join("IMG");
}

/** The backing file qemu-img records in `path`'s header, or `null`. */
export async function backingOf(path: string): Promise<string | null> {
  const info = JSON.parse(await runOk("qemu-img", ["info", "-U", "--output=json", path]));
  return info["backing-filename"] ?? null;
}

/** Runs qemu-img with `args`, failing on a non-zero exit. */
export function qemuImg(...args: string[]): Promise<string> {
  return runOk("qemu-img", args);
}

/** Runs qemu-io on an image (`-f format`) with each command. */
export function qemuIo(path: string, format: string, ...commands: string[]): Promise<string> {
  return runOk("qemu-io", ["-f", format, ...commands.flatMap((c) => ["-c", c]), path]);
}

/** Asserts two images read the same (`qemu-img compare`). */
export async function assertSameData(a: string, b: string): Promise<void> {
  const r = await run("qemu-img", ["compare", "-U", a, b]);
  assert.equal(r.code, 0, `${a} vs ${b}: ${r.stdout}${r.stderr}`);
}

/** What one scenario does on one server, in a fresh folder with its own images. */
export type ScenarioFn = (vm: Vm) => Promise<void>;

/** Options of {@linkcode iotest}. */
export interface IotestOptions {
  /** Makes the images in a folder. */
  make: (dir: string) => Promise<void>;
  /** The `--blockdev` options (`$DIR` = the folder). */
  blockdevs: string[];
  /** More command-line arguments (`--nbd-server`, `--export`; `$DIR` = the folder). */
  args?: string[];
  /** Whether the servers' transcripts must be identical (false where timing decides what is seen). */
  sameTranscript?: boolean;
  /** After both runs (servers stopped): checks across the two folders. */
  compare?: (qsdDir: string, oursDir: string) => Promise<void>;
}

/**
 * Registers one test that runs `fn` against each server of
 * {@linkcode SERVERS} on its own copy of the images, then compares.
 */
export function iotest(name: string, options: IotestOptions, fn: ScenarioFn): void {
  Deno.test({
    name,
    ignore: !QEMU_TOOLS,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async () => {
      await using root = await tempDir();
      const transcripts = new Map<ServerKind, string[]>();
      // Both servers run at once: the suite's time is the slower one's, not the sum.
      await Promise.all(SERVERS.map(async (kind) => {
        const dir = `${root.path}/${kind === "qsd" ? "q" : "o"}`;
        await Deno.mkdir(dir);
        await options.make(dir);
        const vm = await Vm.start(kind, dir, options.blockdevs, options.args);
        try {
          await fn(vm);
          transcripts.set(kind, vm.transcript);
        } catch (e) {
          throw new Error(`[${kind}] ${(e as Error).message}\n--- transcript ---\n${vm.log()}`, {
            cause: e,
          });
        } finally {
          await vm.stop();
        }
      }));
      const q = transcripts.get("qsd");
      const o = transcripts.get("qedstream");
      if (q && o && options.sameTranscript !== false) {
        for (let i = 0; i < Math.max(q.length, o.length); i++) {
          if (q[i] !== o[i]) {
            assert.fail(
              `transcripts differ at line ${i}:\n  ${
                q.slice(Math.max(0, i - 3), i).join("\n  ")
              }\nqsd:  ${q[i]}\nours: ${o[i]}`,
            );
          }
        }
      }
      if (q && o) await options.compare?.(`${root.path}/q`, `${root.path}/o`);
    },
  });
}
