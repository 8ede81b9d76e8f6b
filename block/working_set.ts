/**
 * Working sets: the ranges a guest read from its template while it booted,
 * in the order it first read them, in a small versioned file tied to the
 * template. A stream given a working set copies those ranges first, in that
 * order, then the rest (`block/stream_job.ts`), so a machine booting from a
 * fresh overlay finds what it needs local much sooner.
 *
 * The file (all integers little-endian):
 *
 * ```
 *  offset  size  field
 *   0       4    magic "QSWS" (0x51 0x53 0x57 0x53)
 *   4       4    version, 1
 *   8       8    template size in bytes
 *  16      32    template fingerprint (block/template_fingerprint.ts)
 *  48       4    range count N (at most MAX_WORKING_SET_RANGES)
 *  52       4    reserved, 0
 *  56    12×N    ranges in replay order: offset (8 bytes), length (4 bytes, ≥ 1)
 *  56+12N   4    CRC-32 of every byte before it
 * ```
 *
 * Decoding checks, in this order: length, magic, version, CRC, count, every
 * range inside the template; each failure is a {@linkcode WorkingSetError}
 * with its own code. Ranges may overlap or repeat (a stream skips what is
 * already local); a decoder never allocates more than the input's size.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";
import { crc32 } from "./_crc32.ts";
import {
  FINGERPRINT_BYTES,
  fingerprintHex,
  type FingerprintSource,
  sameFingerprint,
  templateFingerprint,
} from "./template_fingerprint.ts";

/** The file's magic, "QSWS". */
export const WORKING_SET_MAGIC = 0x53575351;
/** The version this code writes and reads. */
export const WORKING_SET_VERSION = 1;
/** Most ranges a file may hold (12 MiB of ranges). */
export const MAX_WORKING_SET_RANGES = 1 << 20;
/** Most bytes one range may cover (the length field is 32 bits). */
export const MAX_WORKING_SET_RANGE = 0xffffffff;

const HEADER = 56;
const ENTRY = 12;

/** A run of bytes `[offset, offset + length)`. */
export interface ByteRange {
  /** Byte offset. */
  offset: number;
  /** Length in bytes, at least 1. */
  length: number;
}

/** A working set: the template it belongs to and the ranges in replay order. */
export interface WorkingSet {
  /** The template's virtual size. */
  templateSize: number;
  /** The template's fingerprint (32 bytes). */
  fingerprint: Uint8Array;
  /** The ranges, in the order the guest first read them. */
  ranges: ByteRange[];
}

/** A working-set file that cannot be used: bad bytes, or made for another template. */
export class WorkingSetError extends QedstreamError {}

/**
 * Encodes a working set as the file's bytes.
 *
 * @example
 * ```ts
 * import { decodeWorkingSet, encodeWorkingSet } from "./working_set.ts";
 * const bytes = encodeWorkingSet({
 *   templateSize: 1 << 20, fingerprint: new Uint8Array(32), ranges: [{ offset: 4096, length: 512 }],
 * });
 * console.log(decodeWorkingSet(bytes).ranges); // [ { offset: 4096, length: 512 } ]
 * ```
 */
export function encodeWorkingSet(ws: WorkingSet): Uint8Array {
  checkRanges(ws.ranges, ws.templateSize);
  if (ws.fingerprint.length !== FINGERPRINT_BYTES) {
    throw new WorkingSetError("WS_BAD_FINGERPRINT", `A fingerprint has ${FINGERPRINT_BYTES} bytes`);
  }
  const bytes = new Uint8Array(HEADER + ENTRY * ws.ranges.length + 4);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, WORKING_SET_MAGIC, true);
  view.setUint32(4, WORKING_SET_VERSION, true);
  view.setBigUint64(8, BigInt(ws.templateSize), true);
  bytes.set(ws.fingerprint, 16);
  view.setUint32(48, ws.ranges.length, true);
  let at = HEADER;
  for (const r of ws.ranges) {
    view.setBigUint64(at, BigInt(r.offset), true);
    view.setUint32(at + 8, r.length, true);
    at += ENTRY;
  }
  view.setUint32(at, crc32(bytes.subarray(0, at)), true);
  return bytes;
}

/**
 * Decodes a working-set file.
 *
 * @throws {WorkingSetError} `WS_TRUNCATED`, `WS_BAD_MAGIC`, `WS_BAD_VERSION`,
 * `WS_BAD_CHECKSUM`, `WS_TOO_MANY_RANGES` or `WS_BAD_RANGE`.
 */
export function decodeWorkingSet(bytes: Uint8Array): WorkingSet {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < HEADER + 4) {
    throw new WorkingSetError(
      "WS_TRUNCATED",
      `Working-set file too short: ${bytes.length} bytes, a header needs ${HEADER + 4}`,
    );
  }
  const magic = view.getUint32(0, true);
  if (magic !== WORKING_SET_MAGIC) {
    throw new WorkingSetError(
      "WS_BAD_MAGIC",
      `Not a working-set file: magic 0x${magic.toString(16).padStart(8, "0")} at offset 0`,
    );
  }
  const version = view.getUint32(4, true);
  if (version !== WORKING_SET_VERSION) {
    throw new WorkingSetError(
      "WS_BAD_VERSION",
      `Unsupported working-set version ${version} (this qedstream reads ${WORKING_SET_VERSION})`,
    );
  }
  const count = view.getUint32(48, true);
  if (count > MAX_WORKING_SET_RANGES) {
    throw new WorkingSetError(
      "WS_TOO_MANY_RANGES",
      `Working set holds ${count} ranges, more than the limit ${MAX_WORKING_SET_RANGES}`,
    );
  }
  const end = HEADER + ENTRY * count;
  if (bytes.length !== end + 4) {
    throw new WorkingSetError(
      "WS_TRUNCATED",
      `Working-set file is ${bytes.length} bytes; ${count} ranges need ${end + 4}`,
    );
  }
  const stored = view.getUint32(end, true);
  const actual = crc32(bytes.subarray(0, end));
  if (stored !== actual) {
    throw new WorkingSetError(
      "WS_BAD_CHECKSUM",
      `Working-set file is damaged: CRC-32 0x${actual.toString(16)} != stored 0x${
        stored.toString(16)
      }`,
    );
  }
  const templateSize = Number(view.getBigUint64(8, true));
  const ranges: ByteRange[] = [];
  for (let at = HEADER; at < end; at += ENTRY) {
    ranges.push({
      offset: Number(view.getBigUint64(at, true)),
      length: view.getUint32(at + 8, true),
    });
  }
  checkRanges(ranges, templateSize);
  return { templateSize, fingerprint: bytes.slice(16, 16 + FINGERPRINT_BYTES), ranges };
}

function checkRanges(ranges: readonly ByteRange[], size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new WorkingSetError("WS_BAD_RANGE", `Template size ${size} is not valid`);
  }
  if (ranges.length > MAX_WORKING_SET_RANGES) {
    throw new WorkingSetError(
      "WS_TOO_MANY_RANGES",
      `Working set holds ${ranges.length} ranges, more than the limit ${MAX_WORKING_SET_RANGES}`,
    );
  }
  for (const [i, r] of ranges.entries()) {
    if (
      !Number.isSafeInteger(r.offset) || !Number.isSafeInteger(r.length) || r.offset < 0 ||
      r.length < 1 || r.length > MAX_WORKING_SET_RANGE || r.offset + r.length > size
    ) {
      throw new WorkingSetError(
        "WS_BAD_RANGE",
        `Working-set range ${i} [${r.offset}, +${r.length}) is outside the template's ${size} bytes`,
      );
    }
  }
}

/**
 * Checks that `ws` was recorded on the template `source` (same size and
 * fingerprint).
 *
 * @throws {WorkingSetError} `WS_WRONG_TEMPLATE`.
 */
export async function checkWorkingSetTemplate(
  ws: WorkingSet,
  source: FingerprintSource,
): Promise<void> {
  if (ws.templateSize !== source.size) {
    throw new WorkingSetError(
      "WS_WRONG_TEMPLATE",
      `Working set is for a template of ${ws.templateSize} bytes, not ${source.size}`,
    );
  }
  const actual = await templateFingerprint(source);
  if (!sameFingerprint(actual, ws.fingerprint)) {
    throw new WorkingSetError(
      "WS_WRONG_TEMPLATE",
      `Working set is for another template: fingerprint ${
        fingerprintHex(ws.fingerprint).slice(0, 16)
      }…, the template's is ${fingerprintHex(actual).slice(0, 16)}…`,
    );
  }
}
