/**
 * `qedstream info`: what `qemu-img info` says about an image, in the same
 * layout, as text or JSON.
 *
 * ```
 * qedstream info [-f FMT] [--output human|json] [--backing-chain] FILE
 * ```
 *
 * @module
 */

import { QedImage } from "../qed/image.ts";
import type { OpenedImage } from "../qed/open_file.ts";
import { imageFormat, lastValue, outputFormat, parseArgs } from "./args.ts";
import { CliError } from "./error.ts";
import { INFO_KEY_ORDER, orderKeys, qemuJson } from "./json.ts";
import { chainLinks, combinePath, openImage } from "./open.ts";
import type { CliOutput } from "./output.ts";
import { formatHumanSize } from "./size.ts";

/** The facts `qemu-img info` reports about one image. */
export interface ImageInfo {
  /** The file name as given (or as derived for a backing file). */
  filename: string;
  /** `qed` or `raw`. */
  format: string;
  /** Guest-visible size in bytes. */
  virtualSize: number;
  /** Bytes the file occupies on disk, when known. */
  actualSize?: number;
  /** QED cluster size. */
  clusterSize?: number;
  /** The backing file name as stored in the header. */
  backingFilename?: string;
  /** The backing file name resolved against the image's folder. */
  fullBackingFilename?: string;
  /** The backing format recorded in the header (`raw` only: QED records no other). */
  backingFilenameFormat?: string;
  /** Whether the need-check bit is set (qemu 7.2 always reports false for QED; we tell the truth). */
  dirty: boolean;
}

/** Gathers {@linkcode ImageInfo} for an opened image named `name`. */
export async function collectInfo(opened: OpenedImage, name: string): Promise<ImageInfo> {
  const image = opened.image;
  const info: ImageInfo = {
    filename: name,
    format: opened.format,
    virtualSize: image.size,
    dirty: false,
  };
  try {
    const stat = await Deno.stat(opened.path);
    if (stat.blocks !== null) info.actualSize = stat.blocks * 512;
  } catch {
    // qemu prints "disk size: unavailable" when it cannot tell.
  }
  if (image instanceof QedImage) {
    info.clusterSize = image.clusterSize;
    info.dirty = image.needsCheck;
    const backing = image.backingFile;
    if (backing !== undefined) {
      info.backingFilename = backing;
      info.fullBackingFilename = combinePath(name, backing);
      if (image.backingFormat !== undefined) info.backingFilenameFormat = image.backingFormat;
    }
  }
  return info;
}

/**
 * `qemu-img info`'s text for one image.
 *
 * @example
 * ```ts
 * import { formatInfoHuman } from "./info.ts";
 * console.log(formatInfoHuman({
 *   filename: "a.qed", format: "qed", virtualSize: 10485760, actualSize: 266240,
 *   clusterSize: 65536, dirty: false,
 * }));
 * ```
 */
export function formatInfoHuman(info: ImageInfo): string {
  let text = `image: ${info.filename}\n` +
    `file format: ${info.format}\n` +
    `virtual size: ${formatHumanSize(info.virtualSize)} (${info.virtualSize} bytes)\n` +
    `disk size: ${
      info.actualSize === undefined ? "unavailable" : formatHumanSize(info.actualSize)
    }\n`;
  if (info.clusterSize !== undefined) text += `cluster_size: ${info.clusterSize}\n`;
  if (info.dirty) text += "cleanly shut down: no\n";
  if (info.backingFilename !== undefined) {
    text += `backing file: ${info.backingFilename}`;
    if (info.fullBackingFilename === undefined) text += " (cannot determine actual path)";
    else if (info.fullBackingFilename !== info.backingFilename) {
      text += ` (actual path: ${info.fullBackingFilename})`;
    }
    text += "\n";
    if (info.backingFilenameFormat !== undefined) {
      text += `backing file format: ${info.backingFilenameFormat}\n`;
    }
  }
  return text;
}

/** The JSON object `qemu-img info --output json` prints, keys in qemu's order. */
export function infoJsonObject(info: ImageInfo): Record<string, unknown> {
  return orderKeys({
    "backing-filename-format": info.backingFilenameFormat,
    "virtual-size": info.virtualSize,
    "filename": info.filename,
    "cluster-size": info.clusterSize,
    "format": info.format,
    "actual-size": info.actualSize,
    "full-backing-filename": info.fullBackingFilename,
    "backing-filename": info.backingFilename,
    "dirty-flag": info.dirty,
  }, INFO_KEY_ORDER);
}

/** Runs `info`. */
export async function infoCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  const args = parseArgs(argv, {
    shortValues: "f",
    longValues: ["output"],
    longFlags: ["backing-chain"],
  });
  const output = outputFormat(args);
  const [file, extra] = args.operands;
  if (file === undefined) throw new CliError("Expecting one image file name");
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`);
  const chain = args.flags.has("backing-chain");
  // Like qemu-img, a plain info does not open the backing file: it may be missing.
  const opened = await openImage(file, {
    format: imageFormat(lastValue(args, "f")),
    backing: chain,
  });
  try {
    const infos: ImageInfo[] = [];
    for (const link of chainLinks(opened, file)) {
      infos.push(await collectInfo(link.opened, link.name));
    }
    if (output === "json") {
      const objects = infos.map(infoJsonObject);
      out.stdout(qemuJson(chain ? objects : objects[0]));
    } else {
      out.stdout(infos.map(formatInfoHuman).join("\n"));
    }
  } finally {
    await opened.close();
  }
  return 0;
}
