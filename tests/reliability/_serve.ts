/**
 * A `qedstream serve` process for the campaigns: a raw template, `drives`
 * QED overlays on it (each with its own template node), a QMP monitor and an NBD export of the first drive,
 * all on Unix sockets in a temporary folder; plus a small QMP line client and
 * an RSS probe of the server process.
 *
 * @module
 */

import { join } from "node:path";
import { runOk } from "../_tools.ts";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

/** A running `qedstream serve`. */
export interface Serve extends AsyncDisposable {
  dir: string;
  qmp: string;
  nbd: string;
  template: string;
  drives: string[];
  child: Deno.ChildProcess;
  /** Resident set size of the server process in KiB (Linux /proc). */
  rssKiB(): Promise<number>;
  /** Whether the process is still running. */
  alive(): boolean;
}

async function waitForSocket(path: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      (await Deno.connect({ transport: "unix", path })).close();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/**
 * The `--blockdev` arguments of drive `i`: the template's `file` and `raw`
 * nodes `tplf<i>`/`tpl<i>`, the overlay's `file` node `f<i>` and its QED node
 * `d<i>` backed by `tpl<i>`.
 */
export function driveBlockdevArgs(template: string, overlay: string, i: number): string[] {
  // One template node per drive, as qemu opens a backing file per overlay: a
  // stream blocks every node down to its base, so two streams cannot share one
  // (qemu: "Node 'tpl' is busy: block device is in use by block job: stream").
  return [
    "--blockdev",
    `driver=file,node-name=tplf${i},filename=${template},read-only=on`,
    "--blockdev",
    `driver=raw,node-name=tpl${i},file=tplf${i},read-only=on`,
    "--blockdev",
    `driver=file,node-name=f${i},filename=${overlay}`,
    "--blockdev",
    `driver=qed,node-name=d${i},file=f${i},backing=tpl${i}`,
  ];
}

/** Starts `qedstream serve` in `dir` with a `templateBytes` template and `drives` overlays. */
export async function startServe(
  dir: string,
  templateBytes: Uint8Array,
  drives: number,
): Promise<Serve> {
  const template = join(dir, "base.raw");
  await Deno.writeFile(template, templateBytes);
  const args = ["run", "-A", CLI, "serve"];
  const paths: string[] = [];
  for (let i = 0; i < drives; i++) {
    const path = join(dir, `d${i}.qed`);
    paths.push(path);
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", template, "-F", "raw", path]);
    args.push(...driveBlockdevArgs(template, path, i));
  }
  const qmp = join(dir, "qmp.sock");
  const nbd = join(dir, "nbd.sock");
  args.push(
    "--qmp",
    `unix:${qmp}`,
    "--nbd-server",
    `addr.type=unix,addr.path=${nbd}`,
    "--export",
    "type=nbd,id=e0,node-name=d0,name=d0,writable=on",
  );
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" })
    .spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stderr = new Response(child.stderr).text();
  try {
    await waitForSocket(qmp, 20000);
    await waitForSocket(nbd, 20000);
  } catch (e) {
    child.kill("SIGKILL");
    await status;
    throw new Error(`qedstream serve did not start: ${await stderr}`, { cause: e });
  }
  return {
    dir,
    qmp,
    nbd,
    template,
    drives: paths,
    child,
    alive: () => !exited,
    async rssKiB() {
      const text = await Deno.readTextFile(`/proc/${child.pid}/status`);
      return Number(/VmRSS:\s+(\d+)/.exec(text)?.[1] ?? NaN);
    },
    async [Symbol.asyncDispose]() {
      if (!exited) child.kill("SIGTERM");
      await status;
      await stderr;
    },
  };
}

/** A QMP connection that sends commands and collects replies and events as parsed lines. */
export class QmpLines {
  readonly events: Record<string, unknown>[] = [];
  #conn: Deno.Conn;
  #buf = "";
  #dec = new TextDecoder();
  #waiters: { id: string; resolve: (m: Record<string, unknown>) => void }[] = [];
  #replies = new Map<string, Record<string, unknown>>();
  #closed = false;
  readonly done: Promise<void>;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.done = this.#pump();
  }

  /** Connects and negotiates capabilities. */
  static async open(path: string): Promise<QmpLines> {
    const q = new QmpLines(await Deno.connect({ transport: "unix", path }));
    await q.call("qmp_capabilities");
    return q;
  }

  async #pump(): Promise<void> {
    const chunk = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#buf += this.#dec.decode(chunk.subarray(0, n), { stream: true });
        let nl: number;
        while ((nl = this.#buf.indexOf("\n")) >= 0) {
          const line = this.#buf.slice(0, nl).trim();
          this.#buf = this.#buf.slice(nl + 1);
          if (!line) continue;
          const m = JSON.parse(line) as Record<string, unknown>;
          if ("event" in m) this.events.push(m);
          else if ("id" in m) {
            const id = String(m.id);
            const w = this.#waiters.findIndex((x) => x.id === id);
            if (w >= 0) this.#waiters.splice(w, 1)[0]!.resolve(m);
            else this.#replies.set(id, m);
          }
        }
      }
    } catch { /* closed */ }
    this.#closed = true;
  }

  #n = 0;

  /** Sends a command and returns its reply (`{return}` or `{error}`). */
  async call(execute: string, args?: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = `c${this.#n++}`;
    const reply = new Promise<Record<string, unknown>>((resolve) => {
      const ready = this.#replies.get(id);
      if (ready) resolve(ready);
      else this.#waiters.push({ id, resolve });
    });
    const msg = JSON.stringify({ execute, ...(args ? { arguments: args } : {}), id });
    await this.#conn.write(new TextEncoder().encode(msg + "\n"));
    return await reply;
  }

  /** Sends raw bytes. */
  async send(bytes: Uint8Array): Promise<void> {
    await this.#conn.write(bytes);
  }

  /** Whether the server closed the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch { /* closed already */ }
    await this.done;
  }
}
