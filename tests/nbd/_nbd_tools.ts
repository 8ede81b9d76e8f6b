/**
 * Helpers for the NBD tests: an in-memory export target that tracks
 * allocation, a client connected to a server through an in-memory pipe, and
 * real peers (qemu-nbd, nbdkit) started on a Unix socket and killed after.
 *
 * @module
 */

import type { NbdExportStatusKind, NbdExportTarget } from "../../nbd/export.ts";
import { NbdClient, type NbdClientOptions } from "../../nbd/client.ts";
import { NbdServer } from "../../nbd/server.ts";
import { streamPair } from "../../nbd/pipe.ts";

/** Granule of the memory target's allocation map. */
export const GRANULE = 4096;

/** A memory disk that reports unallocated, zero and data granules. */
export class MemoryTarget implements NbdExportTarget {
  readonly bytes: Uint8Array;
  /** Per granule: "unallocated", "zero" or "data". */
  readonly state: NbdExportStatusKind[];
  flushes = 0;
  writes = 0;
  /** When set, every read and write waits for it first. */
  gate: Promise<void> | null = null;
  /** When set, operations on a byte inside this range fail. */
  failAt: [number, number] | null = null;
  /** When set, each read first waits this many ms (real time) for its offset. */
  readDelay: ((offset: number) => number) | null = null;
  /** Reads and writes running right now, and the most seen at once. */
  active = 0;
  maxActive = 0;
  /** Offsets of finished reads, in finishing order. */
  readOrder: number[] = [];

  constructor(size: number) {
    this.bytes = new Uint8Array(size);
    this.state = new Array(Math.ceil(size / GRANULE)).fill("unallocated");
  }

  /** Replaces the contents, all granules allocated as data. */
  load(data: Uint8Array): void {
    this.bytes.set(data);
    this.state.fill("data");
  }

  get size(): number {
    return this.bytes.length;
  }

  #check(offset: number, length: number): void {
    if (this.failAt && offset < this.failAt[1] && offset + length > this.failAt[0]) {
      throw new Error("injected failure");
    }
  }

  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.maxActive = Math.max(this.maxActive, ++this.active);
    try {
      if (this.gate) await this.gate;
      if (this.readDelay) await new Promise((r) => setTimeout(r, this.readDelay!(offset)));
      this.#check(offset, buf.length);
      buf.set(this.bytes.subarray(offset, offset + buf.length));
      this.readOrder.push(offset);
    } finally {
      this.active--;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.maxActive = Math.max(this.maxActive, ++this.active);
    try {
      if (this.gate) await this.gate;
    } finally {
      this.active--;
    }
    this.#check(offset, data.length);
    this.writes++;
    this.bytes.set(data, offset);
    for (let g = Math.floor(offset / GRANULE); g * GRANULE < offset + data.length; g++) {
      this.state[g] = "data";
    }
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#check(offset, length);
    this.bytes.fill(0, offset, offset + length);
    for (let g = Math.floor(offset / GRANULE); g * GRANULE < offset + length; g++) {
      const whole = g * GRANULE >= offset && (g + 1) * GRANULE <= offset + length;
      if (whole) this.state[g] = "zero";
      else if (this.state[g] === "unallocated") this.state[g] = "data";
    }
    await Promise.resolve();
  }

  async flush(): Promise<void> {
    this.flushes++;
    await Promise.resolve();
  }

  async blockStatus(
    offset: number,
    length: number,
  ): Promise<{ kind: NbdExportStatusKind; length: number }> {
    await Promise.resolve();
    const g0 = Math.floor(offset / GRANULE);
    const kind = this.state[g0]!;
    let end = (g0 + 1) * GRANULE;
    while (end < offset + length && this.state[end / GRANULE] === kind) end += GRANULE;
    return { kind, length: Math.min(end, offset + length) - offset };
  }
}

/** A client connected to `server` through an in-memory pipe. */
export function pipeClient(
  server: NbdServer,
  options: Omit<NbdClientOptions, "connect" | "address"> = {},
): Promise<NbdClient> {
  return NbdClient.connect({
    ...options,
    connect: () => {
      const [a, b] = streamPair();
      server.serve(b);
      return Promise.resolve(a);
    },
  });
}

/** Deterministic pseudo-random bytes. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A running program, killed (and waited for) on dispose. */
export interface Peer extends AsyncDisposable {
  /** Kills the program and waits for it to exit. */
  kill(): Promise<void>;
  /** Output so far (for failure messages). */
  readonly pid: number;
}

/** The option that makes `program` write a pid file once it accepts connections, if it has one. */
function readinessArgs(program: string, pidfile: string): string[] {
  if (program === "nbdkit") return ["-P", pidfile];
  if (program === "qemu-nbd") return [`--pid-file=${pidfile}`];
  return [];
}

/**
 * Starts `program` and waits until it accepts connections on `socket` (up to
 * 10 s): nbdkit and qemu-nbd say so by writing a pid file (the socket file
 * appears at bind(), before listen(), when a connect is still refused);
 * anything else is awaited by the socket file.
 */
export async function startPeer(program: string, args: string[], socket: string): Promise<Peer> {
  const pidfile = `${socket}.pid`;
  const ready = readinessArgs(program, pidfile);
  await Deno.remove(pidfile).catch(() => {});
  const child = new Deno.Command(program, {
    args: [...ready, ...args],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stderr = new Response(child.stderr).text();
  const kill = async () => {
    if (!exited) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    await status;
    await stderr;
    await Deno.remove(pidfile).catch(() => {});
  };
  for (let i = 0; i < 1000; i++) {
    try {
      if (ready.length > 0 && (await Deno.stat(pidfile)).size === 0) throw new Error("not ready");
      await Deno.stat(socket);
      return { pid: child.pid, kill, [Symbol.asyncDispose]: kill };
    } catch {
      if (exited) break;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  await kill();
  throw new Error(`${program} ${args.join(" ")} did not create ${socket}: ${await stderr}`);
}

/** A server with one memory export, listening nowhere (use `serve` or `listen`). */
export function memoryServer(
  size: number,
  exportOptions: {
    name?: string;
    readOnly?: boolean;
    minimumBlock?: number;
    maximumPayload?: number;
  } = {},
): { server: NbdServer; target: MemoryTarget } {
  const server = new NbdServer();
  const target = new MemoryTarget(size);
  server.addExport({ name: exportOptions.name ?? "disk", target, ...withoutName(exportOptions) });
  return { server, target };
}

function withoutName<T extends { name?: string }>(o: T): Omit<T, "name"> {
  const { name: _name, ...rest } = o;
  return rest;
}
