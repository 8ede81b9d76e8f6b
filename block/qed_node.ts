/**
 * The QED format driver as a {@linkcode BlockNode}.
 *
 * @module
 */

import type { QedImage } from "../qed/image.ts";
import type { BackingChange, BlockNode, BlockStatus } from "./node.ts";

/** Options of {@linkcode qedNode}. */
export interface QedNodeOptions {
  /** The node name. */
  nodeName: string;
  /** The filename to show. Default: the storage's path, or `""`. */
  filename?: string;
  /**
   * The backing node. It is attached to the image too (reads of unallocated
   * ranges go to it). Default `null`: the image reads zeros there.
   */
  backing?: BlockNode | null;
}

function storagePath(image: QedImage): string {
  const path = (image.storage as { path?: unknown }).path;
  return typeof path === "string" ? path : "";
}

/** A QED image's node (driver `qed`). */
class QedNode implements BlockNode {
  readonly nodeName: string;
  readonly driver = "qed";
  readonly filename: string;
  readonly image: QedImage;
  #backing: BlockNode | null;

  constructor(image: QedImage, options: QedNodeOptions) {
    this.image = image;
    this.nodeName = options.nodeName;
    this.filename = options.filename ?? storagePath(image);
    this.#backing = options.backing ?? null;
    image.backing = this.#backing;
  }

  get size(): number {
    return this.image.size;
  }
  get readOnly(): boolean {
    return this.image.readOnly;
  }
  get backing(): BlockNode | null {
    return this.#backing;
  }
  get clusterSize(): number {
    return this.image.clusterSize;
  }
  read(offset: number, buf: Uint8Array): Promise<void> {
    return this.image.read(offset, buf);
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.image.write(offset, data);
  }
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.image.writeZeroes(offset, length);
  }
  flush(): Promise<void> {
    return this.image.flush();
  }
  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    const ext = await this.image.blockStatus(offset, length);
    return { kind: ext.kind, length: ext.length };
  }
  async setBacking(backing: BlockNode | null, change: BackingChange): Promise<void> {
    // Graph first, then the header, in qemu's order (stream_prepare).
    this.#backing = backing;
    this.image.backing = backing;
    await this.image.changeBackingFile(change.backingFile, change.backingFormat);
  }
  close(): Promise<void> {
    return this.image.close();
  }
}

/**
 * Wraps an open {@linkcode QedImage} as a node; `options.backing` becomes
 * both the node's backing and the image's.
 *
 * @example
 * ```ts ignore
 * const top = qedNode(await QedImage.open(storage), { nodeName: "ov", backing: baseNode });
 * ```
 */
export function qedNode(image: QedImage, options: QedNodeOptions): BlockNode & { image: QedImage } {
  return new QedNode(image, options);
}
