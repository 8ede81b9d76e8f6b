/**
 * `qedstream create`: makes a QED or raw image like `qemu-img create`.
 *
 * ```
 * qedstream create [-f qed|raw] [-b BACKING -F raw|qed] [-u] [-o OPTIONS] FILE [SIZE]
 * ```
 *
 * @module
 */

import { FileStorage } from "../io/file_storage.ts";
import { NbdClient } from "../nbd/client.ts";
import { isNbdUri, parseNbdUri } from "../nbd/uri.ts";
import { QedImage } from "../qed/image.ts";
import { RawImage } from "../qed/raw_image.ts";
import { lastValue, parseArgs } from "./args.ts";
import { CliError, describeError } from "./error.ts";
import { combinePath, openImage } from "./open.ts";
import type { CliOutput } from "./output.ts";
import { parseSize } from "./size.ts";

/** What `create` was asked to make. */
export interface CreateOptions {
  /** The image format (`-f`). Default `"qed"`. */
  format: "qed" | "raw";
  /** The file to create. */
  file: string;
  /** The virtual size in bytes, when given (else the backing file's). */
  size?: number;
  /** The backing file name (`-b` or `-o backing_file=`), stored verbatim. */
  backingFile?: string;
  /** The backing format (`-F` or `-o backing_fmt=`). */
  backingFormat?: string;
  /** `-o cluster_size=`. */
  clusterSize?: number;
  /** `-o table_size=`. */
  tableSize?: number;
  /** `-u`: do not open the backing file (a size is then required). */
  unsafe: boolean;
  /** `-q`: print nothing on success. */
  quiet?: boolean;
}

/** The message qemu-img gives for a size it cannot read (one line here). */
export const INVALID_SIZE_MESSAGE =
  "Invalid image size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.";

/** The backing formats qemu 7.2 knows by name (a QED header records only "raw" or "probe"). */
export const KNOWN_FORMATS: readonly string[] = [
  "raw",
  "qed",
  "qcow2",
  "qcow",
  "vmdk",
  "vdi",
  "vpc",
  "vhdx",
  "luks",
  "parallels",
  "bochs",
  "cloop",
  "dmg",
];

/** A size operand as a safe integer, or a {@linkcode CliError} with qemu-img's text. */
export function sizeOperand(text: string): number {
  const size = parseSize(text);
  if (size === null) throw new CliError(INVALID_SIZE_MESSAGE);
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new CliError(
      `Invalid image size specified. Must be between 0 and ${Number.MAX_SAFE_INTEGER}.`,
    );
  }
  return Number(size);
}

/**
 * Reads `create`'s command line.
 *
 * @throws {CliError} with qemu-img's text for each mistake.
 *
 * @example
 * ```ts
 * import { parseCreateArgs } from "./create.ts";
 * const o = parseCreateArgs(["-b", "base.raw", "-F", "raw", "-o", "cluster_size=4k", "ov.qed"]);
 * console.log(o.backingFile, o.clusterSize, o.size); // base.raw 4096 undefined
 * ```
 */
export function parseCreateArgs(argv: readonly string[]): CreateOptions {
  const args = parseArgs(argv, { shortValues: "fbFo", shortFlags: "uq" });
  const format = lastValue(args, "f") ?? "qed";
  const [file, sizeText, extra] = args.operands;
  if (file === undefined) throw new CliError("Expecting image file name");
  const options: CreateOptions = {
    format: "qed",
    file,
    unsafe: args.flags.has("u"),
    quiet: args.flags.has("q"),
  };
  if (sizeText !== undefined) options.size = sizeOperand(sizeText);
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`);
  if (format !== "qed" && format !== "raw") throw new CliError(`Unknown file format '${format}'`);
  options.format = format;
  const b = lastValue(args, "b");
  const F = lastValue(args, "F");
  if (b !== undefined) options.backingFile = b;
  if (F !== undefined) options.backingFormat = F;
  for (const list of args.values.get("o") ?? []) {
    for (const item of list.split(",")) {
      if (item === "") continue;
      const eq = item.indexOf("=");
      const key = eq < 0 ? item : item.slice(0, eq);
      const value = eq < 0 ? "" : item.slice(eq + 1);
      const allowed = format === "qed"
        ? ["size", "backing_file", "backing_fmt", "cluster_size", "table_size"]
        : ["size"];
      if (!allowed.includes(key)) throw new CliError(`${file}: Invalid parameter '${key}'`);
      if (key === "backing_file") options.backingFile = value;
      else if (key === "backing_fmt") options.backingFormat = value;
      else {
        const n = parseSize(value);
        if (n === null || n > BigInt(Number.MAX_SAFE_INTEGER)) {
          throw new CliError(
            `${file}: Parameter '${key}' expects a non-negative number below 2^64`,
          );
        }
        if (key === "size") options.size ??= Number(n);
        else if (key === "cluster_size") options.clusterSize = Number(n);
        else options.tableSize = Number(n);
      }
    }
  }
  return options;
}

/**
 * The line qemu-img prints before it writes the image.
 *
 * @example
 * ```ts
 * import { formatCreateLine } from "./create.ts";
 * console.log(formatCreateLine({ format: "qed", file: "a.qed", size: 10485760, unsafe: false }));
 * // Formatting 'a.qed', fmt=qed size=10485760 cluster_size=65536
 * ```
 */
export function formatCreateLine(options: CreateOptions): string {
  const parts = [
    `Formatting '${options.file}', fmt=${options.format}`,
    `size=${options.size ?? 0}`,
  ];
  if (options.format === "qed") {
    if (options.backingFile !== undefined) parts.push(`backing_file=${options.backingFile}`);
    if (options.backingFormat !== undefined) parts.push(`backing_fmt=${options.backingFormat}`);
    parts.push(`cluster_size=${options.clusterSize ?? 65536}`);
    if (options.tableSize !== undefined) parts.push(`table_size=${options.tableSize}`);
  }
  return parts.join(" ");
}

/** Runs `create`. */
export async function createCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  const options = parseCreateArgs(argv);
  const { file } = options;
  if (options.backingFile === "") {
    throw new CliError(`${file}: Expected backing file name, got empty string`);
  }
  if (options.backingFile !== undefined) {
    if (options.format === "raw") {
      throw new CliError(`${file}: Backing file not supported for file format 'raw'`);
    }
    // qemu 7.2 no longer probes the backing format at create time.
    if (options.backingFormat === undefined) {
      throw new CliError(`${file}: Backing file specified without backing format`);
    }
    if (!KNOWN_FORMATS.includes(options.backingFormat)) {
      throw new CliError(`${file}: Unknown driver '${options.backingFormat}'`);
    }
    if (!options.unsafe) {
      // Like qemu-img, open the backing file even when a size is given: it must exist.
      const size = await backingSize(options);
      options.size ??= size;
    }
  }
  if (options.size === undefined) {
    throw new CliError(`${file}: Image creation needs a size parameter`);
  }
  if (!options.quiet) out.stdout(formatCreateLine(options) + "\n");
  let storage: FileStorage;
  try {
    storage = await FileStorage.open(file, { create: true, truncate: true });
  } catch (e) {
    throw new CliError(`${file}: Could not create '${file}': ${describeError(e)}`, { cause: e });
  }
  try {
    if (options.format === "raw") {
      await RawImage.create(storage, options.size);
    } else {
      await QedImage.create(storage, {
        size: options.size,
        ...(options.clusterSize !== undefined ? { clusterSize: options.clusterSize } : {}),
        ...(options.tableSize !== undefined ? { tableSize: options.tableSize } : {}),
        ...(options.backingFile !== undefined ? { backingFile: options.backingFile } : {}),
        ...(options.backingFile !== undefined && options.backingFormat !== undefined
          ? { backingFormat: options.backingFormat }
          : {}),
      });
    }
    await storage.flush();
  } catch (e) {
    throw new CliError(`${file}: ${describeError(e)}`, { cause: e });
  } finally {
    await storage.close().catch(() => {});
  }
  return 0;
}

/**
 * The size of the backing file, rounded up to 512 bytes as qemu's block
 * layer sees every image; opening it also proves it exists and has the
 * format `-F` claims.
 */
async function backingSize(options: CreateOptions): Promise<number> {
  const name = options.backingFile!;
  if (isNbdUri(name)) return await nbdBackingSize(options.file, name);
  const path = combinePath(options.file, name);
  const fmt = options.backingFormat === "raw" || options.backingFormat === "qed"
    ? options.backingFormat
    : undefined;
  if (fmt === undefined) {
    throw new CliError(
      `${options.file}: Could not open '${path}': qedstream cannot open '${options.backingFormat}' images (use -u and give a size)`,
    );
  }
  let opened;
  try {
    opened = await openImage(path, { format: fmt, backing: false });
  } catch (e) {
    throw new CliError(`${options.file}: ${describeError(e)}`, { cause: e });
  }
  try {
    return Math.ceil(opened.image.size / 512) * 512;
  } finally {
    await opened.close();
  }
}

/** The size of an NBD export named as a backing file (qemu's URI syntax), as qemu-img asks it. */
async function nbdBackingSize(file: string, uri: string): Promise<number> {
  let client: NbdClient;
  try {
    const target = parseNbdUri(uri);
    client = await NbdClient.connect({
      address: target.address,
      exportName: target.exportName,
      readOnly: true,
      reconnect: false,
    });
  } catch (e) {
    throw new CliError(`${file}: Could not open '${uri}': ${describeError(e)}`, { cause: e });
  }
  try {
    return Math.ceil(client.size / 512) * 512;
  } finally {
    await client.close();
  }
}
