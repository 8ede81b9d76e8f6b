/**
 * nbdkit as a template repository for tests: started in the foreground on a
 * Unix socket, killed (and restartable on the same socket) by the test.
 *
 * @module
 */

import { startPeer } from "./_nbd_tools.ts";
import { runOk } from "../_tools.ts";

/** A running nbdkit that can be killed and started again with the same arguments. */
export class Nbdkit implements AsyncDisposable {
  readonly socket: string;
  readonly exportName: string;
  readonly #args: string[];
  #peer: Awaited<ReturnType<typeof startPeer>> | null = null;

  private constructor(socket: string, exportName: string, args: string[]) {
    this.socket = socket;
    this.exportName = exportName;
    this.#args = args;
  }

  /**
   * Starts `nbdkit -f -U SOCKET -e EXPORT ARGS…` (plugin, filters and
   * parameters in `args`) and waits for the socket.
   */
  static async start(socket: string, args: string[], exportName = "tpl"): Promise<Nbdkit> {
    const kit = new Nbdkit(socket, exportName, args);
    await kit.restart();
    return kit;
  }

  /** The export as qemu names it. */
  get uri(): string {
    return `nbd+unix:///${this.exportName}?socket=${this.socket}`;
  }

  /** Whether the server is running. */
  get running(): boolean {
    return this.#peer !== null;
  }

  /** Kills the server at once (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    const peer = this.#peer;
    this.#peer = null;
    await peer?.kill();
    await Deno.remove(this.socket).catch(() => {});
  }

  /** Starts the server again on the same socket. */
  async restart(): Promise<void> {
    await this.kill();
    this.#peer = await startPeer(
      "nbdkit",
      ["-f", "-U", this.socket, "-e", this.exportName, ...this.#args],
      this.socket,
    );
  }

  /** Kills the server. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.kill();
  }
}

/** Writes `size` bytes, each MiB filled with its own byte value `(MiB index % 250) + 1`. */
export async function writeStripes(path: string, size: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 1 << 20) {
    bytes.fill(((at >> 20) % 250) + 1, at, Math.min(size, at + (1 << 20)));
  }
  await Deno.writeFile(path, bytes);
  return bytes;
}

/** `qemu-img compare` of two images (formats given), throwing with qemu's text when they differ. */
export async function assertSameImage(
  a: string,
  aFormat: string,
  b: string,
  bFormat: string,
): Promise<void> {
  await runOk("qemu-img", ["compare", "-f", aFormat, "-F", bFormat, a, b]);
}

/** The backing file `qemu-img info` reports for `path`, or `undefined`. */
export async function backingOf(path: string): Promise<string | undefined> {
  const info = JSON.parse(await runOk("qemu-img", ["info", "-U", "--output", "json", path]));
  return info["backing-filename"];
}
