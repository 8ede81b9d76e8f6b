/**
 * Small helpers shared by the NBD codecs: 64-bit fields as numbers, strings,
 * and bounds checks that throw {@linkcode NbdProtocolError}.
 *
 * @module
 */

import { NbdProtocolError } from "./error.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** A big-endian view of `bytes` that respects its `byteOffset`. */
export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Reads a u64 as a number. Values above 2^53 lose precision but stay above
 * every export size, so bounds checks still reject them.
 */
export function getU64(dv: DataView, at: number): number {
  return dv.getUint32(at) * 2 ** 32 + dv.getUint32(at + 4);
}

/** Writes a non-negative safe integer as a u64. */
export function setU64(dv: DataView, at: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`NBD u64 field must be a non-negative safe integer, got ${value}`);
  }
  dv.setUint32(at, Math.floor(value / 2 ** 32));
  dv.setUint32(at + 4, value >>> 0);
}

/** Checks that a u32 field value is in range. */
export function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${what} must be a u32, got ${value}`);
  }
}

/** UTF-8 bytes of a string. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes UTF-8, throwing a protocol error on invalid bytes. */
export function fromUtf8(bytes: Uint8Array, what: string): string {
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    throw new NbdProtocolError("NBD_BAD_STRING", `${what} is not valid UTF-8`, { cause });
  }
}

/** Throws unless `bytes` holds exactly `size` bytes. */
export function expectSize(bytes: Uint8Array, size: number, what: string): void {
  if (bytes.length !== size) {
    throw new NbdProtocolError(
      "NBD_BAD_LENGTH",
      `${what} must be ${size} bytes, got ${bytes.length}`,
    );
  }
}

/** Throws unless `bytes` holds at least `size` bytes. */
export function expectAtLeast(bytes: Uint8Array, size: number, what: string): void {
  if (bytes.length < size) {
    throw new NbdProtocolError(
      "NBD_BAD_LENGTH",
      `${what} must be at least ${size} bytes, got ${bytes.length}`,
    );
  }
}

/** Concatenates byte arrays. */
export function concat(parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Formats a 64-bit magic for messages. */
export function hex(value: bigint | number): string {
  return `0x${value.toString(16)}`;
}
