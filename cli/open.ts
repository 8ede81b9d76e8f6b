/**
 * Opening images for the verbs: error texts in qemu's words, and the names
 * qemu shows for the files of a backing chain.
 *
 * @module
 */

import { QedImage } from "../qed/image.ts";
import { type ImageFormat, type OpenedImage, openImageFile } from "../qed/open_file.ts";
import { openFailure } from "./error.ts";

/** How a verb opens an image. */
export interface OpenOptions {
  /** Open read-only. Default `true`. */
  readOnly?: boolean;
  /** The format given with `-f`; probed when absent. */
  format?: ImageFormat | undefined;
  /** Open the backing chain too. Default `true`. */
  backing?: boolean;
}

/**
 * Opens `path` (and its chain), turning any failure into
 * `Could not open 'PATH': <reason>`.
 */
export async function openImage(path: string, options: OpenOptions = {}): Promise<OpenedImage> {
  try {
    return await openImageFile(path, {
      readOnly: options.readOnly ?? true,
      backing: options.backing ?? true,
      ...(options.format ? { format: options.format } : {}),
    });
  } catch (e) {
    throw openFailure(path, e);
  }
}

/**
 * The name qemu shows for a backing file: the stored name, relative to the
 * folder of the image that names it (qemu's `path_combine`: an absolute name
 * or an overlay without a folder leaves the name as it is).
 *
 * @example
 * ```ts
 * import { combinePath } from "./open.ts";
 * console.log(combinePath("sub/o.qed", "../base.raw")); // sub/../base.raw
 * console.log(combinePath("o.qed", "base.raw")); // base.raw
 * ```
 */
export function combinePath(overlay: string, backingName: string): string {
  if (backingName.startsWith("/")) return backingName;
  const slash = overlay.lastIndexOf("/");
  if (slash < 0) return backingName;
  return overlay.slice(0, slash + 1) + backingName;
}

/** One image of an opened chain, with the name qemu would show for it. */
export interface ChainLink {
  /** The file name as qemu shows it (`sub/../base.raw`). */
  name: string;
  /** The opened image. */
  opened: OpenedImage;
  /** 0 for the image named on the command line, 1 for its backing file, … */
  depth: number;
}

/** The images of a chain from the top down, with their display names. */
export function chainLinks(top: OpenedImage, topName: string): ChainLink[] {
  const links: ChainLink[] = [];
  let name = topName;
  for (let node: OpenedImage | null = top, depth = 0; node; node = node.backing, depth++) {
    links.push({ name, opened: node, depth });
    const stored = node.image instanceof QedImage ? node.image.backingFile : undefined;
    if (node.backing && stored !== undefined) name = combinePath(name, stored);
    else if (node.backing) name = node.backing.path;
  }
  return links;
}
