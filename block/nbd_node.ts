/**
 * qemu's `nbd` block driver as a {@linkcode BlockNode}: a remote export
 * reached through an {@linkcode NbdClient}, readable and (when the export
 * and the caller allow it) writable.
 *
 * Block status follows qemu's driver with one deliberate difference: an
 * extent the server reports as a hole (`NBD_STATE_HOLE`, with or without
 * `NBD_STATE_ZERO`) is `unallocated` here, not `zero`. An NBD node never has
 * a backing, so an unallocated run reads the same; the gain is that a stream
 * whose bottom is the remote template skips its holes instead of fetching
 * zeros and writing zero clusters, so its time follows the template's data,
 * not its virtual size.
 *
 * Allocation answers are asked with a look-ahead and the last run is kept:
 * a stream asks about every chunk, and one round trip then serves every
 * chunk of a long run. Writes through the node forget the kept run.
 *
 * @module
 */

import { NbdClient, type NbdClientOptions } from "../nbd/client.ts";
import { formatNbdUri, type NbdTarget } from "../nbd/uri.ts";
import { BlockError } from "./error.ts";
import type { BlockNode, BlockStatus, BlockStatusKind } from "./node.ts";

/** How far past the asked range an allocation query looks: 1 GiB. */
export const NBD_STATUS_LOOKAHEAD = 1024 * 1024 * 1024;

/** What an {@linkcode nbdNode} needs of its client (an {@linkcode NbdClient} has it all). */
export type NbdNodeClient = Pick<
  NbdClient,
  "size" | "readOnly" | "read" | "write" | "writeZeroes" | "flush" | "blockStatus" | "close"
>;

/** Options of {@linkcode nbdNode}. */
export interface NbdNodeOptions {
  /** The node name. */
  nodeName: string;
  /** The filename to show (qemu shows the URI). Default `""`. */
  filename?: string;
  /** Refuse writes even when the export takes them. Default `false`. */
  readOnly?: boolean;
}

/** A node over an NBD export (driver `nbd`). */
class NbdNode implements BlockNode {
  readonly nodeName: string;
  readonly driver = "nbd";
  readonly filename: string;
  readonly backing = null;
  readonly client: NbdNodeClient;
  readonly #readOnly: boolean;
  /** The last run learned from the server: `[start, end)` of one kind. */
  #run: { start: number; end: number; kind: BlockStatusKind } | null = null;

  constructor(client: NbdNodeClient, options: NbdNodeOptions) {
    this.client = client;
    this.nodeName = options.nodeName;
    this.filename = options.filename ?? "";
    this.#readOnly = options.readOnly ?? false;
  }

  get size(): number {
    return this.client.size;
  }
  get readOnly(): boolean {
    return this.#readOnly || this.client.readOnly;
  }
  read(offset: number, buf: Uint8Array): Promise<void> {
    return this.client.read(offset, buf);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) return this.#refuse();
    this.#run = null;
    return this.client.write(offset, data);
  }
  writeZeroes(offset: number, length: number): Promise<void> {
    if (this.readOnly) return this.#refuse();
    this.#run = null;
    return this.client.writeZeroes(offset, length);
  }
  flush(): Promise<void> {
    return this.readOnly ? Promise.resolve() : this.client.flush();
  }
  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const size = this.client.size;
    length = Math.max(0, Math.min(length, size - offset));
    const kept = this.#run;
    if (kept && offset >= kept.start && offset < kept.end) {
      return { kind: kept.kind, length: Math.min(length, kept.end - offset) };
    }
    const ask = Math.min(size - offset, Math.max(length, NBD_STATUS_LOOKAHEAD));
    const st = await this.client.blockStatus(offset, ask);
    const kind: BlockStatusKind = st.kind === "data" ? "data" : "unallocated";
    if (st.length > 0) this.#run = { start: offset, end: offset + st.length, kind };
    return { kind, length: Math.max(1, Math.min(length, st.length)) };
  }
  close(): Promise<void> {
    return this.client.close();
  }
  #refuse(): Promise<never> {
    return Promise.reject(new BlockError("READ_ONLY", `Node '${this.nodeName}' is read only`));
  }
}

/**
 * Wraps a connected client as a node.
 *
 * @example
 * ```ts ignore
 * const client = await NbdClient.connect({ address: { type: "unix", path: sock }, exportName: "tpl" });
 * const template = nbdNode(client, { nodeName: "tpl", filename: "nbd+unix:///tpl?socket=" + sock });
 * ```
 */
export function nbdNode(
  client: NbdNodeClient,
  options: NbdNodeOptions,
): BlockNode & { client: NbdNodeClient } {
  return new NbdNode(client, options);
}

/** Options of {@linkcode openNbdNode}. */
export interface OpenNbdNodeOptions extends NbdNodeOptions {
  /** Client settings (timeouts, `reconnectDelay`, the clock). */
  client?: Omit<NbdClientOptions, "address" | "connect" | "exportName">;
}

/**
 * Connects to `target` and returns its node; the filename defaults to the
 * target's URI in qemu's form.
 *
 * @example
 * ```ts ignore
 * const node = await openNbdNode(parseNbdUri(name), { nodeName: "#block1", readOnly: true });
 * ```
 */
export async function openNbdNode(
  target: NbdTarget,
  options: OpenNbdNodeOptions,
): Promise<BlockNode & { client: NbdNodeClient }> {
  const client = await NbdClient.connect({
    ...options.client,
    address: target.address,
    exportName: target.exportName,
    ...(options.readOnly ? { readOnly: true } : {}),
  });
  return nbdNode(client, { filename: formatNbdUri(target), ...options });
}
