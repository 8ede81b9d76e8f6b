/**
 * A template's fingerprint: what ties a working-set file or a checksum
 * manifest to the template it was made from, cheaply enough to check before
 * every stream.
 *
 * The fingerprint is the SHA-256 of the template's virtual size (8 bytes,
 * little-endian), its first 64 KiB (the header region: partition table,
 * boot loader) and a sample of 4 KiB blocks at {@linkcode FINGERPRINT_SAMPLES}
 * evenly spaced offsets. It is computed from guest-visible bytes, so a raw
 * file, a QED image and a remote node holding the same disk agree. It
 * detects a different or rebuilt template with high probability; it is not
 * a proof that every byte is the same (that is the manifest's job).
 *
 * @module
 */

/** Bytes of the header region hashed whole. */
export const FINGERPRINT_HEADER_BYTES = 65536;
/** Number of sampled blocks. */
export const FINGERPRINT_SAMPLES = 64;
/** Size of each sampled block. */
export const FINGERPRINT_SAMPLE_BYTES = 4096;
/** Length of a fingerprint in bytes (a SHA-256 digest). */
export const FINGERPRINT_BYTES = 32;

/** What a fingerprint is computed from: a size and positional reads. */
export interface FingerprintSource {
  /** Virtual size in bytes. */
  readonly size: number;
  /** Fills `buf` with the bytes at `offset` (inside `size`). */
  read(offset: number, buf: Uint8Array): Promise<void>;
}

/** The byte ranges a fingerprint of a `size`-byte template reads, in hashing order. */
export function fingerprintRanges(size: number): { offset: number; length: number }[] {
  const out = [{ offset: 0, length: Math.min(size, FINGERPRINT_HEADER_BYTES) }];
  for (let i = 0; i < FINGERPRINT_SAMPLES; i++) {
    const at = Math.floor((size * i) / FINGERPRINT_SAMPLES / FINGERPRINT_SAMPLE_BYTES) *
      FINGERPRINT_SAMPLE_BYTES;
    const length = Math.min(FINGERPRINT_SAMPLE_BYTES, size - at);
    if (length > 0) out.push({ offset: at, length });
  }
  return out;
}

/**
 * The fingerprint of `source` (32 bytes). The reads are issued together, so
 * over a remote link it costs about one round trip.
 *
 * @example
 * ```ts
 * import { templateFingerprint } from "./template_fingerprint.ts";
 * const disk = new Uint8Array(1 << 20).fill(1);
 * const source = { size: disk.length, read: async (o: number, b: Uint8Array) => b.set(disk.subarray(o, o + b.length)) };
 * console.log((await templateFingerprint(source)).length); // 32
 * ```
 */
export async function templateFingerprint(source: FingerprintSource): Promise<Uint8Array> {
  const ranges = fingerprintRanges(source.size);
  const total = 8 + ranges.reduce((s, r) => s + r.length, 0);
  const bytes = new Uint8Array(total);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(source.size), true);
  let at = 8;
  const reads: Promise<void>[] = [];
  for (const r of ranges) {
    reads.push(source.read(r.offset, bytes.subarray(at, at + r.length)));
    at += r.length;
  }
  await Promise.all(reads);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** Whether two fingerprints are equal. */
export function sameFingerprint(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A fingerprint as lowercase hex (for messages). */
export function fingerprintHex(f: Uint8Array): string {
  return [...f].map((b) => b.toString(16).padStart(2, "0")).join("");
}
