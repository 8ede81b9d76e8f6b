/**
 * The file adapter: probes an image file's format and opens it with its
 * backing chain, the way qemu resolves backing names.
 *
 * @module
 */

import { realpath } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { FileStorage } from "../io/file_storage.ts";
import { readFull, type Storage } from "../io/storage.ts";
import { BackingChainError } from "./error.ts";
import { QED_MAGIC } from "./header.ts";
import { QedImage } from "./image.ts";
import { RawImage } from "./raw_image.ts";

/** The image formats qedstream opens. */
export type ImageFormat = "qed" | "raw";

/** The deepest backing chain opened before giving up (guards against loops). */
export const MAX_BACKING_CHAIN_DEPTH = 64;

/**
 * The format of the image in `storage`: `"qed"` when it starts with the QED
 * magic, else `"raw"` (as qemu's probe decides between the two).
 *
 * @example
 * ```ts
 * import { MemoryStorage } from "../io/memory_storage.ts";
 * import { probeFormat } from "./open_file.ts";
 * console.log(await probeFormat(new MemoryStorage(new Uint8Array([0x51, 0x45, 0x44, 0])))); // qed
 * ```
 */
export async function probeFormat(storage: Storage): Promise<ImageFormat> {
  const magic = new Uint8Array(4);
  await readFull(storage, 0, magic);
  return new DataView(magic.buffer).getUint32(0, true) === QED_MAGIC ? "qed" : "raw";
}

/**
 * Where a backing name points: absolute names as they are, relative ones
 * resolved against the overlay's folder (not the working directory), as qemu
 * does.
 *
 * @example
 * ```ts
 * import { resolveBackingPath } from "./open_file.ts";
 * console.log(resolveBackingPath("/img/sub/top.qed", "base.raw")); // /img/sub/base.raw
 * ```
 */
export function resolveBackingPath(overlayPath: string, name: string): string {
  return isAbsolute(name) ? name : join(dirname(overlayPath), name);
}

/** An image file opened with its backing chain. */
export interface OpenedImage {
  /** The path the image was opened by. */
  path: string;
  /** Its format. */
  format: ImageFormat;
  /** The image. */
  image: QedImage | RawImage;
  /** The opened backing file (already attached to `image`), or `null`. */
  backing: OpenedImage | null;
  /** Closes this image and then its whole backing chain. */
  close(): Promise<void>;
}

/** Options of {@linkcode openImageFile}. */
export interface OpenImageFileOptions {
  /** Open the top image read-only. Default `false`. The backing chain is always read-only. */
  readOnly?: boolean;
  /** The top image's format. Default: probed. */
  format?: ImageFormat;
  /** Open the backing chain and attach it. Default `true`. */
  backing?: boolean;
  /**
   * Only open backing files inside this folder: for images from an untrusted
   * source, whose backing name could point anywhere. A name that resolves
   * outside it (an absolute path elsewhere, `..`, or a symlink, checked on
   * the real path) is refused. Default: no restriction, as qemu.
   */
  backingRoot?: string;
  /**
   * Write-behind for the top image's file, in bytes (see
   * `FileStorageOptions.writeBehind`). Default `0` (off).
   */
  writeBehind?: number;
}

/** Whether `path` is `root` or lies below it (both absolute and normalised). */
function isInside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/**
 * Opens an image file and, recursively, its backing chain (read-only), each
 * backing image attached to the image above it. A backing file's format is
 * raw when the QED header says so (`NO_PROBE`), else probed.
 *
 * @throws {BackingChainError} `QED_BACKING_MISSING` when a backing file does
 * not exist, `QED_BACKING_OPEN` when it cannot be opened (the cause says
 * why), `QED_BACKING_LOOP` / `QED_BACKING_TOO_DEEP` for a chain that loops
 * or is deeper than {@linkcode MAX_BACKING_CHAIN_DEPTH},
 * `QED_BACKING_OUTSIDE_ROOT` when `backingRoot` is given and a backing name
 * resolves outside it.
 *
 * @example
 * ```ts ignore
 * import { openImageFile } from "./open_file.ts";
 * const opened = await openImageFile("top.qed", { readOnly: true });
 * console.log(opened.format, opened.backing?.path);
 * await opened.close();
 * ```
 */
export function openImageFile(
  path: string,
  options: OpenImageFileOptions = {},
): Promise<OpenedImage> {
  return openChain(path, {
    readOnly: options.readOnly ?? false,
    format: options.format,
    backing: options.backing ?? true,
    root: options.backingRoot,
    writeBehind: options.writeBehind ?? 0,
  }, []);
}

interface ChainOptions {
  readOnly: boolean;
  format: ImageFormat | undefined;
  backing: boolean;
  root: string | undefined;
  writeBehind: number;
}

async function openChain(
  path: string,
  options: ChainOptions,
  seen: string[],
): Promise<OpenedImage> {
  const storage = await FileStorage.open(path, {
    readOnly: options.readOnly,
    writeBehind: options.writeBehind,
  });
  let image: QedImage | RawImage | undefined;
  try {
    const format = options.format ?? await probeFormat(storage);
    if (format === "raw") {
      image = await RawImage.open(storage, { readOnly: options.readOnly });
      return chainNode(path, format, image, null);
    }
    const qed = await QedImage.open(storage, { readOnly: options.readOnly });
    image = qed;
    let backing: OpenedImage | null = null;
    if (options.backing && qed.backingFile !== undefined) {
      backing = await openBacking(path, qed, [...seen, await realpath(path)], options.root);
      qed.backing = backing.image;
    }
    return chainNode(path, format, qed, backing);
  } catch (e) {
    await (image ?? storage).close().catch(() => {});
    throw e;
  }
}

async function openBacking(
  path: string,
  qed: QedImage,
  seen: string[],
  root: string | undefined,
): Promise<OpenedImage> {
  const name = qed.backingFile!;
  const backingPath = resolveBackingPath(path, name);
  const outside = (where: string, allowed: string) =>
    new BackingChainError(
      "QED_BACKING_OUTSIDE_ROOT",
      `Could not open backing file of '${path}': '${name}' resolves to '${where}', ` +
        `outside the allowed folder '${allowed}'`,
    );
  // Judged on the real path (symlinks included); a missing file outside the
  // folder by name is refused rather than reported missing.
  let real: string;
  try {
    real = await realpath(backingPath);
  } catch (cause) {
    if (root !== undefined && !isInside(resolve(root), resolve(backingPath))) {
      throw outside(resolve(backingPath), resolve(root));
    }
    throw new BackingChainError(
      "QED_BACKING_MISSING",
      `Could not open backing file: Could not open '${backingPath}': No such file or directory`,
      { cause },
    );
  }
  if (root !== undefined) {
    const realRoot = await realpath(root).catch(() => resolve(root));
    if (!isInside(realRoot, real)) throw outside(real, realRoot);
  }
  if (seen.includes(real)) {
    throw new BackingChainError(
      "QED_BACKING_LOOP",
      `Could not open backing file: '${backingPath}' is already in the backing chain`,
    );
  }
  if (seen.length >= MAX_BACKING_CHAIN_DEPTH) {
    throw new BackingChainError(
      "QED_BACKING_TOO_DEEP",
      `Could not open backing file: the backing chain is deeper than ${MAX_BACKING_CHAIN_DEPTH}`,
    );
  }
  try {
    return await openChain(backingPath, {
      readOnly: true,
      format: qed.backingFormat,
      backing: true,
      root,
      writeBehind: 0,
    }, seen);
  } catch (cause) {
    if (cause instanceof BackingChainError) throw cause;
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new BackingChainError("QED_BACKING_OPEN", `Could not open backing file: ${detail}`, {
      cause,
    });
  }
}

function chainNode(
  path: string,
  format: ImageFormat,
  image: QedImage | RawImage,
  backing: OpenedImage | null,
): OpenedImage {
  return {
    path,
    format,
    image,
    backing,
    async close() {
      try {
        await image.close();
      } finally {
        await backing?.close();
      }
    },
  };
}
