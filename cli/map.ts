/**
 * `qedstream map`: where each range of an image's contents comes from, with
 * the fields and merging of `qemu-img map`.
 *
 * ```
 * qedstream map [-f FMT] [--output human|json] FILE
 * ```
 *
 * @module
 */

import { imageFormat, lastValue, outputFormat, parseArgs } from "./args.ts";
import { CliError } from "./error.ts";
import { type ChainLink, chainLinks, openImage } from "./open.ts";
import type { CliOutput } from "./output.ts";

/** One range of `qemu-img map`'s output. */
export interface MapEntry {
  /** Guest offset of the range. */
  start: number;
  /** Its length in bytes. */
  length: number;
  /** Which image of the chain answers for it: 0 = the top. */
  depth: number;
  /** Allocated somewhere in the chain (data or a zero cluster). */
  present: boolean;
  /** Reads as zeros. */
  zero: boolean;
  /** Holds data in a file. */
  data: boolean;
  /** The offset of the data in the file, when there is one. */
  offset?: number;
  /** The file holding the data, when there is one. */
  filename?: string;
}

/** A range of guest bytes. */
export interface ByteRange {
  /** Where it starts. */
  offset: number;
  /** How many bytes. */
  length: number;
}

/**
 * The entry for the range starting at `offset` (at most `length` bytes):
 * walks down the chain while the range is unallocated, as qemu-img map does.
 * Past the end of a shorter backing file, or without one, an unallocated
 * range reads as zeros and is reported at the depth where the walk stopped.
 */
export async function mapEntryAt(
  links: readonly ChainLink[],
  { offset, length }: ByteRange,
): Promise<MapEntry> {
  let bytes = length;
  for (let depth = 0; depth < links.length; depth++) {
    const link = links[depth]!;
    const status = await link.opened.image.blockStatus(offset, bytes);
    bytes = Math.max(1, Math.min(bytes, status.length));
    if (status.kind === "data") {
      const entry: MapEntry = {
        start: offset,
        length: bytes,
        depth,
        present: true,
        zero: false,
        data: true,
        filename: link.name,
      };
      entry.offset = status.hostOffset ?? offset;
      return entry;
    }
    if (status.kind === "zero") {
      return { start: offset, length: bytes, depth, present: true, zero: true, data: false };
    }
    const below = links[depth + 1];
    if (below === undefined || offset >= below.opened.image.size) {
      return { start: offset, length: bytes, depth, present: false, zero: true, data: false };
    }
    bytes = Math.min(bytes, below.opened.image.size - offset);
  }
  throw new CliError("empty backing chain");
}

/** Whether qemu-img would print `next` as part of `current`. */
export function mergeable(current: MapEntry, next: MapEntry): boolean {
  if (current.length === 0) return false;
  if (
    current.zero !== next.zero || current.data !== next.data || current.depth !== next.depth ||
    current.present !== next.present || current.filename !== next.filename ||
    (current.offset === undefined) !== (next.offset === undefined)
  ) {
    return false;
  }
  return current.offset === undefined || current.offset + current.length === next.offset;
}

/** The merged entries covering `[0, size)`. */
export async function mapImage(links: readonly ChainLink[], size: number): Promise<MapEntry[]> {
  const entries: MapEntry[] = [];
  let current: MapEntry | undefined;
  for (let offset = 0; offset < size;) {
    const next = await mapEntryAt(links, { offset, length: size - offset });
    offset += next.length;
    if (current && mergeable(current, next)) {
      current.length += next.length;
      continue;
    }
    if (current) entries.push(current);
    current = next;
  }
  if (current) entries.push(current);
  return entries;
}

/**
 * `qemu-img map --output json`: one object per line in a JSON array.
 *
 * @example
 * ```ts
 * import { formatMapJson } from "./map.ts";
 * console.log(formatMapJson([
 *   { start: 0, length: 65536, depth: 0, present: false, zero: true, data: false },
 * ]));
 * // [{ "start": 0, "length": 65536, "depth": 0, "present": false, "zero": true, "data": false}]
 * ```
 */
export function formatMapJson(entries: readonly MapEntry[]): string {
  const lines = entries.map((e) =>
    `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}` +
    (e.offset === undefined ? "" : `, "offset": ${e.offset}`) + "}"
  );
  return `[${lines.join(",\n")}]\n`;
}

/** C's `%#-16x`: `0x`-prefixed hexadecimal (plain `0` for zero), padded to 16 columns. */
function hex16(n: number): string {
  return (n === 0 ? "0" : `0x${n.toString(16)}`).padEnd(16);
}

/**
 * `qemu-img map`'s human table: only ranges with data in a file are listed.
 *
 * @example
 * ```ts
 * import { formatMapHuman } from "./map.ts";
 * console.log(formatMapHuman([{
 *   start: 0, length: 65536, depth: 0, present: true, zero: false, data: true,
 *   offset: 327680, filename: "ov.qed",
 * }]));
 * ```
 */
export function formatMapHuman(entries: readonly MapEntry[]): string {
  let text = `${"Offset".padEnd(16)}${"Length".padEnd(16)}${"Mapped to".padEnd(16)}File\n`;
  for (const e of entries) {
    if (!e.data || e.zero) continue;
    text += `${hex16(e.start)}${hex16(e.length)}${hex16(e.offset ?? 0)}${e.filename ?? ""}\n`;
  }
  return text;
}

/** Runs `map`. */
export async function mapCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  const args = parseArgs(argv, { shortValues: "f", longValues: ["output"] });
  const output = outputFormat(args);
  const [file, extra] = args.operands;
  if (file === undefined) throw new CliError("Expecting one image file name");
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`);
  const opened = await openImage(file, { format: imageFormat(lastValue(args, "f")) });
  try {
    const entries = await mapImage(chainLinks(opened, file), opened.image.size);
    out.stdout(output === "json" ? formatMapJson(entries) : formatMapHuman(entries));
  } finally {
    await opened.close();
  }
  return 0;
}
