/**
 * Shared pieces of the QMP tests: a real qemu-storage-daemon on a Unix
 * socket, our server on one, a raw line reader, an "empty block layer" of
 * stub handlers that answer like a daemon without block nodes or jobs, and
 * the normalisation of versions and timestamps.
 *
 * @module
 */

import { QmpError, QmpServer, type QmpServerOptions } from "../../qmp/mod.ts";
import { listen, type QmpListener } from "../../qmp/socket_transport.ts";

/** A started server on a Unix socket. */
export interface RunningServer extends AsyncDisposable {
  path: string;
}

async function waitForSocket(path: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const c = await Deno.connect({ transport: "unix", path });
      c.close();
      return;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Starts qemu-storage-daemon with `monitors` QMP sockets in `dir`; stops it on dispose. */
export async function startQsd(
  dir: string,
  monitors = 1,
): Promise<RunningServer & { paths: string[] }> {
  const paths: string[] = [];
  const args: string[] = [];
  for (let i = 0; i < monitors; i++) {
    const path = `${dir}/qsd${i}.sock`;
    paths.push(path);
    args.push(
      "--chardev",
      `socket,id=m${i},path=${path},server=on,wait=off`,
      "--monitor",
      `chardev=m${i}`,
    );
  }
  const child = new Deno.Command("qemu-storage-daemon", { args, stdout: "null", stderr: "null" })
    .spawn();
  try {
    for (const p of paths) await waitForSocket(p, 10000);
  } catch (e) {
    child.kill("SIGKILL");
    await child.status;
    throw e;
  }
  return {
    path: paths[0]!,
    paths,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGTERM");
      } catch { /* exited already */ }
      await child.status;
    },
  };
}

/** Wires handlers that answer like a daemon with no block nodes and no jobs. */
export function wireEmptyBlockLayer(server: QmpServer): void {
  const noBlockJob = (args: { device?: string; id?: string }) => {
    throw new QmpError("DeviceNotActive", `Block job '${args.device ?? args.id}' not found`);
  };
  const noJob = () => {
    throw new QmpError("GenericError", "Job not found");
  };
  server.commands.handle<{ device: string }>("block-stream", (args) => {
    throw new QmpError(
      "GenericError",
      `Cannot find device='${args.device}' nor node-name='${args.device}'`,
    );
  });
  for (const c of ["query-block-jobs", "query-jobs", "query-block", "query-named-block-nodes"]) {
    server.commands.handle(c, () => []);
  }
  for (
    const c of [
      "block-job-set-speed",
      "block-job-cancel",
      "block-job-pause",
      "block-job-resume",
      "block-job-complete",
      "block-job-dismiss",
      "block-job-finalize",
    ]
  ) server.commands.handle(c, noBlockJob);
  for (
    const c of [
      "job-pause",
      "job-resume",
      "job-cancel",
      "job-complete",
      "job-dismiss",
      "job-finalize",
    ]
  ) {
    server.commands.handle(c, noJob);
  }
}

/** Starts our server (with the empty block layer) on a Unix socket in `dir`. */
export async function startOurs(
  dir: string,
  options: QmpServerOptions = {},
): Promise<RunningServer & { server: QmpServer; listener: QmpListener }> {
  const server = new QmpServer(options);
  wireEmptyBlockLayer(server);
  const path = `${dir}/ours.sock`;
  const listener = await listen(server, { path });
  return {
    path,
    server,
    listener,
    async [Symbol.asyncDispose]() {
      await listener.close();
      server.close();
    },
  };
}

/** A raw QMP connection that reads whole lines. */
export class RawConnection {
  #conn: Deno.Conn;
  #buf = new Uint8Array(0);
  #dec = new TextDecoder();
  #eof = false;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Connects to a Unix socket. */
  static async open(path: string): Promise<RawConnection> {
    return new RawConnection(await Deno.connect({ transport: "unix", path }));
  }

  /** Writes bytes or a string. */
  async send(data: Uint8Array | string): Promise<void> {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /** The next line (without `\r\n`), or null at EOF or after `ms` ms. */
  async line(ms = 10000): Promise<string | null> {
    const deadline = Date.now() + ms;
    for (;;) {
      const nl = this.#buf.indexOf(0x0a);
      if (nl >= 0) {
        const text = this.#dec.decode(this.#buf.subarray(0, nl)).replace(/\r$/, "");
        this.#buf = this.#buf.slice(nl + 1);
        return text;
      }
      if (this.#eof) return null;
      const left = deadline - Date.now();
      if (left <= 0) return null;
      const chunk = new Uint8Array(1 << 16);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.#conn.read(chunk).catch(() => null),
        new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), left))),
      ]);
      clearTimeout(timer);
      if (n === "timeout") return null;
      if (n === null) {
        this.#eof = true;
        continue;
      }
      const next = new Uint8Array(this.#buf.length + n);
      next.set(this.#buf);
      next.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = next;
    }
  }

  /** Reads lines until one contains `marker`; returns the lines before it. */
  async until(marker: string, ms = 20000): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const l = await this.line(ms);
      if (l === null) {
        throw new Error(`no line with ${marker}; got ${JSON.stringify(lines).slice(0, 2000)}`);
      }
      if (l.includes(marker)) return lines;
      lines.push(l);
    }
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch { /* closed */ }
  }
}

/** Replaces versions and timestamps by fixed values, so two servers compare equal. */
export function normalise(line: string): string {
  return line
    .replace(
      /\{"micro": \d+, "minor": \d+, "major": \d+\}, "package": "(?:[^"\\]|\\.)*"/g,
      '{"micro": 0, "minor": 2, "major": 7}, "package": "P"',
    )
    .replace(/"timestamp": \{"seconds": -?\d+, "microseconds": -?\d+\}/g, '"timestamp": T');
}
