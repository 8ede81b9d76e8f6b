/**
 * The two servers the management tests run against, started the same way:
 * a real qemu-storage-daemon 7.2 and `qedstream serve`, each serving a QED
 * overlay on a raw template over a QMP Unix socket in a temporary folder.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { QmpClient } from "../../qmp/client.ts";
import { runOk } from "../_tools.ts";

/** Which server. */
export type ServerKind = "qsd" | "qedstream";

/** Both, in the order the tests run them. */
export const SERVER_KINDS: readonly ServerKind[] = ["qsd", "qedstream"];

const CLI_PATH = fileURLToPath(new URL("../../cli.ts", import.meta.url));

/** Size of the test disks: 4 MiB, eight 512 KiB stream chunks. */
export const DISK_SIZE = 4 << 20;

/** A running server; disposing of it stops it (SIGTERM, then waits for it to exit). */
export interface RunningServer extends AsyncDisposable {
  /** `unix:PATH`, as the CLI verbs take it. */
  socket: string;
  /** The socket path. */
  path: string;
  /** A new QMP client on the server. */
  connect(): Promise<QmpClient>;
  /** Stops the server and waits until it has exited (images flushed and closed). */
  stop(): Promise<void>;
}

/**
 * Writes the template `base.raw` (data with a zero hole in the middle) and
 * the empty overlay `ov.qed` backed by it, in `dir`. With `mid`, a middle
 * QED image `mid.qed` lies between them, holding the first 1 MiB.
 */
export async function makeChain(dir: string, options: { mid?: boolean } = {}): Promise<void> {
  const base = `${dir}/base.raw`;
  await runOk("qemu-img", ["create", "-q", "-f", "raw", base, String(DISK_SIZE)]);
  await runOk("qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -q -P 0x5a 0 1M",
    "-c",
    "write -q -P 0xc3 2M 2M",
    "-c",
    "write -q -P 0x11 1536k 4k",
    base,
  ]);
  let below = base;
  let belowFormat = "raw";
  if (options.mid) {
    const mid = `${dir}/mid.qed`;
    await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", base, "-F", "raw", mid]);
    await runOk("qemu-io", ["-f", "qed", "-c", "write -q -P 0x77 0 1M", mid]);
    below = mid;
    belowFormat = "qed";
  }
  await runOk("qemu-img", [
    "create",
    "-q",
    "-f",
    "qed",
    "-b",
    below,
    "-F",
    belowFormat,
    `${dir}/ov.qed`,
  ]);
}

/** Options of {@linkcode startServer}. */
export interface ServerOptions {
  /** Fail every read of the template that covers this byte offset with EIO (through blkdebug). */
  failReadAt?: number;
}

/**
 * The `--blockdev` options serving `ov.qed` of `dir` as node `ov`: the
 * driver opens its chain, or with `failReadAt` the chain is given node by
 * node with a blkdebug node over the template.
 */
function blockdevArgs(dir: string, options: ServerOptions): string[] {
  const top = ["--blockdev", `driver=file,node-name=f0,filename=${dir}/ov.qed`];
  if (options.failReadAt === undefined) {
    return [...top, "--blockdev", "driver=qed,node-name=ov,file=f0"];
  }
  const sector = Math.floor(options.failReadAt / 512);
  return [
    "--blockdev",
    `driver=file,node-name=bf,filename=${dir}/base.raw,read-only=on`,
    "--blockdev",
    `driver=blkdebug,node-name=bd,image=bf,inject-error.0.event=read_aio,inject-error.0.errno=5,inject-error.0.sector=${sector}`,
    "--blockdev",
    "driver=raw,node-name=base,file=bd,read-only=on",
    ...top,
    "--blockdev",
    "driver=qed,node-name=ov,file=f0,backing=base",
  ];
}

async function waitForSocket(path: string, child: Deno.ChildProcess, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  let exited = false;
  child.status.then(() => exited = true);
  for (;;) {
    try {
      const conn = await Deno.connect({ transport: "unix", path });
      conn.close();
      return;
    } catch (e) {
      if (exited) throw new Error(`server exited before listening on ${path}`);
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** Starts `kind` serving `dir`'s `ov.qed` on `dir/qmp.sock`. */
export async function startServer(
  kind: ServerKind,
  dir: string,
  options: ServerOptions = {},
): Promise<RunningServer> {
  const path = `${dir}/qmp.sock`;
  const command = kind === "qsd"
    ? new Deno.Command("qemu-storage-daemon", {
      args: [
        ...blockdevArgs(dir, options),
        "--chardev",
        `socket,id=m0,path=${path},server=on,wait=off`,
        "--monitor",
        "chardev=m0",
      ],
      stdout: "null",
      stderr: "piped",
    })
    : new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        CLI_PATH,
        "serve",
        ...blockdevArgs(dir, options),
        "--qmp",
        `unix:${path}`,
      ],
      stdout: "null",
      stderr: "piped",
    });
  const child = command.spawn();
  const stderr = new Response(child.stderr).text();
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      try {
        child.kill("SIGTERM");
      } catch { /* exited already */ }
      await child.status;
      await stderr;
    })();
  try {
    await waitForSocket(path, child, 20000);
  } catch (e) {
    await stop();
    throw new Error(`${kind} did not start: ${await stderr}`, { cause: e });
  }
  return {
    socket: `unix:${path}`,
    path,
    connect: () => QmpClient.connect({ path }),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/** The backing file `qemu-img info` reports for an image, or `undefined`. */
export async function backingOf(path: string): Promise<string | undefined> {
  const info = JSON.parse(await runOk("qemu-img", ["info", "--output=json", path]));
  return info["backing-filename"];
}

/** Whether qemu-img finds the two images' contents equal (exit 0). */
export async function sameContents(a: string, b: string): Promise<boolean> {
  const r = await new Deno.Command("qemu-img", {
    args: ["compare", "-q", a, b],
    stdout: "null",
    stderr: "null",
  }).output();
  return r.code === 0;
}
