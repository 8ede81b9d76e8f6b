/**
 * qemu-storage-daemon's `block-stream` for a benchmark: starts the daemon on
 * a QED overlay (its backing chain opened from the header) with a QMP Unix
 * socket, drives it with qedstream's own {@linkcode QmpClient} and times the
 * job alone, from the `block-stream` command to `BLOCK_JOB_COMPLETED`.
 *
 * @module
 */

import { join } from "node:path";
import { QmpClient } from "../qmp/mod.ts";

/** How long the daemon may take to create its socket, in ms. */
const SOCKET_WAIT_MS = 10_000;

async function waitForSocket(path: string, child: Deno.ChildProcess): Promise<void> {
  const deadline = performance.now() + SOCKET_WAIT_MS;
  let exited = false;
  child.status.then(() => exited = true);
  while (performance.now() < deadline) {
    if (exited) throw new Error("qemu-storage-daemon exited before opening its QMP socket");
    try {
      if ((await Deno.stat(path)).isSocket) return;
    } catch {
      // Not there yet.
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`qemu-storage-daemon did not open ${path} within ${SOCKET_WAIT_MS} ms`);
}

/** The daemon's arguments: the overlay as `file` + `qed` nodes, a QMP monitor on `socket`. */
export function qsdArgs(overlay: string, socket: string): string[] {
  return [
    "--blockdev",
    `driver=file,node-name=file0,filename=${overlay}`,
    "--blockdev",
    "driver=qed,node-name=ov,file=file0",
    "--chardev",
    `socket,id=mon0,path=${socket},server=on,wait=off`,
    "--monitor",
    "chardev=mon0",
  ];
}

/**
 * Streams `overlay` in a fresh qemu-storage-daemon and returns the job's
 * time in ms (daemon start and shutdown excluded).
 */
export async function qsdBlockStream(overlay: string, dir: string): Promise<number> {
  const socket = join(dir, "qsd-bench.sock");
  await Deno.remove(socket).catch(() => {});
  const child = new Deno.Command("qemu-storage-daemon", {
    args: qsdArgs(overlay, socket),
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let qmp: QmpClient | undefined;
  try {
    await waitForSocket(socket, child);
    qmp = await QmpClient.connect({ path: socket });
    const start = performance.now();
    await qmp.execute("block-stream", { "job-id": "bench0", device: "ov" });
    const done = await qmp.waitEvent("BLOCK_JOB_COMPLETED", { timeout: 600_000 });
    const ms = performance.now() - start;
    if (done.data.error !== undefined) throw new Error(`block-stream failed: ${done.data.error}`);
    await qmp.execute("quit").catch(() => {});
    return ms;
  } finally {
    await qmp?.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exited = await Promise.race([
      child.status.then(() => true),
      new Promise<false>((r) => timer = setTimeout(() => r(false), 5000)),
    ]);
    clearTimeout(timer);
    if (!exited) child.kill("SIGKILL");
    await child.status;
    await child.stderr.cancel().catch(() => {});
  }
}
