/**
 * Checksum manifests: a SHA-256 per chunk of a template, computed once and
 * stored beside it, so that a stream can verify every chunk it copies and a
 * finished overlay can be checked against the template without the template.
 *
 * The file (all integers little-endian):
 *
 * ```
 *  offset  size  field
 *   0       4    magic "QSMF" (0x51 0x53 0x4d 0x46)
 *   4       4    version, 1
 *   8       8    template size in bytes
 *  16       4    chunk size: a power of two from 4 KiB to 64 MiB
 *  20       4    chunk count N = ceil(size / chunk size) (at most MAX_MANIFEST_CHUNKS)
 *  24      32    template fingerprint (block/template_fingerprint.ts)
 *  56       8    reserved, 0
 *  64    32×N    SHA-256 of each chunk's guest-visible bytes (the last one may be short)
 *  64+32N   4    CRC-32 of every byte before it
 * ```
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";
import { crc32 } from "./_crc32.ts";
import type { CopyVerifier } from "./copy_verifier.ts";
import {
  FINGERPRINT_BYTES,
  type FingerprintSource,
  templateFingerprint,
} from "./template_fingerprint.ts";

/** The file's magic, "QSMF". */
export const MANIFEST_MAGIC = 0x464d5351;
/** The version this code writes and reads. */
export const MANIFEST_VERSION = 1;
/** Default chunk size: 64 KiB, QED's default cluster, so a copy covers whole chunks. */
export const DEFAULT_MANIFEST_CHUNK = 65536;
/** Most chunks a manifest may hold (128 MiB of hashes). */
export const MAX_MANIFEST_CHUNKS = 1 << 22;

const HEADER = 64;
const HASH = 32;
const MIN_CHUNK = 4096;
const MAX_CHUNK = 64 * 1024 * 1024;

/** A checksum manifest of a template. */
export interface ChecksumManifest {
  /** The template's virtual size. */
  templateSize: number;
  /** Bytes per chunk. */
  chunkSize: number;
  /** The template's fingerprint. */
  fingerprint: Uint8Array;
  /** The chunks' SHA-256 digests, 32 bytes each, in order. */
  hashes: Uint8Array;
}

/** A manifest file that cannot be used. */
export class ManifestError extends QedstreamError {}

/** Data that does not match its manifest. */
export class ChecksumMismatchError extends QedstreamError {
  /** The offset of the first chunk that does not match. */
  readonly offset: number;

  /** Makes the error for the chunk at `offset` of `length` bytes. */
  constructor(offset: number, length: number, what = "data") {
    super(
      "CHECKSUM_MISMATCH",
      `Checksum mismatch: ${what} at offset ${offset} (0x${
        offset.toString(16)
      }, ${length} bytes) does not match the manifest`,
    );
    this.offset = offset;
  }
}

/** The number of chunks of a manifest. */
export function manifestChunks(m: Pick<ChecksumManifest, "templateSize" | "chunkSize">): number {
  return Math.ceil(m.templateSize / m.chunkSize);
}

function checkChunkSize(chunkSize: number): void {
  if (
    !Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK || chunkSize > MAX_CHUNK ||
    (chunkSize & (chunkSize - 1)) !== 0
  ) {
    throw new ManifestError(
      "MANIFEST_BAD_CHUNK",
      `Manifest chunk size ${chunkSize} is not a power of two from 4 KiB to 64 MiB`,
    );
  }
}

/**
 * Encodes a manifest as the file's bytes.
 *
 * @throws {ManifestError} for a chunk size, count or fingerprint out of bounds.
 */
export function encodeManifest(m: ChecksumManifest): Uint8Array {
  checkChunkSize(m.chunkSize);
  const n = manifestChunks(m);
  if (n > MAX_MANIFEST_CHUNKS || m.hashes.length !== n * HASH) {
    throw new ManifestError(
      "MANIFEST_BAD_COUNT",
      `Manifest needs ${n} hashes (at most ${MAX_MANIFEST_CHUNKS}), has ${m.hashes.length / HASH}`,
    );
  }
  if (m.fingerprint.length !== FINGERPRINT_BYTES) {
    throw new ManifestError(
      "MANIFEST_BAD_FINGERPRINT",
      `A fingerprint has ${FINGERPRINT_BYTES} bytes`,
    );
  }
  const bytes = new Uint8Array(HEADER + n * HASH + 4);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MANIFEST_MAGIC, true);
  view.setUint32(4, MANIFEST_VERSION, true);
  view.setBigUint64(8, BigInt(m.templateSize), true);
  view.setUint32(16, m.chunkSize, true);
  view.setUint32(20, n, true);
  bytes.set(m.fingerprint, 24);
  bytes.set(m.hashes, HEADER);
  const end = HEADER + n * HASH;
  view.setUint32(end, crc32(bytes.subarray(0, end)), true);
  return bytes;
}

/**
 * Decodes a manifest file.
 *
 * @throws {ManifestError} `MANIFEST_TRUNCATED`, `MANIFEST_BAD_MAGIC`,
 * `MANIFEST_BAD_VERSION`, `MANIFEST_BAD_CHUNK`, `MANIFEST_BAD_COUNT` or
 * `MANIFEST_BAD_CHECKSUM`.
 *
 * @example
 * ```ts
 * import { buildManifest, decodeManifest, encodeManifest } from "./manifest.ts";
 * const disk = new Uint8Array(1 << 20);
 * const source = { size: disk.length, read: async (o: number, b: Uint8Array) => b.set(disk.subarray(o, o + b.length)) };
 * const m = decodeManifest(encodeManifest(await buildManifest(source)));
 * console.log(m.chunkSize, m.hashes.length); // 65536 512
 * ```
 */
export function decodeManifest(bytes: Uint8Array): ChecksumManifest {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < HEADER + 4) {
    throw new ManifestError(
      "MANIFEST_TRUNCATED",
      `Manifest file too short: ${bytes.length} bytes, a header needs ${HEADER + 4}`,
    );
  }
  const magic = view.getUint32(0, true);
  if (magic !== MANIFEST_MAGIC) {
    throw new ManifestError(
      "MANIFEST_BAD_MAGIC",
      `Not a checksum manifest: magic 0x${magic.toString(16).padStart(8, "0")} at offset 0`,
    );
  }
  const version = view.getUint32(4, true);
  if (version !== MANIFEST_VERSION) {
    throw new ManifestError(
      "MANIFEST_BAD_VERSION",
      `Unsupported manifest version ${version} (this qedstream reads ${MANIFEST_VERSION})`,
    );
  }
  const templateSize = Number(view.getBigUint64(8, true));
  const chunkSize = view.getUint32(16, true);
  checkChunkSize(chunkSize);
  const n = view.getUint32(20, true);
  if (!Number.isSafeInteger(templateSize) || n !== manifestChunks({ templateSize, chunkSize })) {
    throw new ManifestError(
      "MANIFEST_BAD_COUNT",
      `Manifest says ${n} chunks; a ${templateSize}-byte template in ${chunkSize}-byte chunks has ${
        manifestChunks({ templateSize, chunkSize })
      }`,
    );
  }
  if (n > MAX_MANIFEST_CHUNKS) {
    throw new ManifestError(
      "MANIFEST_BAD_COUNT",
      `Manifest has ${n} chunks, more than ${MAX_MANIFEST_CHUNKS}`,
    );
  }
  const end = HEADER + n * HASH;
  if (bytes.length !== end + 4) {
    throw new ManifestError(
      "MANIFEST_TRUNCATED",
      `Manifest file is ${bytes.length} bytes; ${n} chunks need ${end + 4}`,
    );
  }
  const stored = view.getUint32(end, true);
  const actual = crc32(bytes.subarray(0, end));
  if (stored !== actual) {
    throw new ManifestError(
      "MANIFEST_BAD_CHECKSUM",
      `Manifest file is damaged: CRC-32 0x${actual.toString(16)} != stored 0x${
        stored.toString(16)
      }`,
    );
  }
  return {
    templateSize,
    chunkSize,
    fingerprint: bytes.slice(24, 24 + FINGERPRINT_BYTES),
    hashes: bytes.slice(HEADER, end),
  };
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
}

function hashAt(m: ChecksumManifest, index: number): Uint8Array {
  return m.hashes.subarray(index * HASH, (index + 1) * HASH);
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Options of {@linkcode buildManifest} and {@linkcode verifyManifest}. */
export interface ManifestScanOptions {
  /** Chunk size (build only). Default {@linkcode DEFAULT_MANIFEST_CHUNK}. */
  chunkSize?: number;
  /** Chunks read at once. Default 4. */
  parallel?: number;
  /** Stops the scan (rejects with the signal's reason). */
  signal?: AbortSignal;
  /** Called after each chunk with the bytes done so far. */
  onProgress?: (done: number, total: number) => void;
}

/** Runs `step(i)` for every chunk index, `parallel` at a time, in order of start. */
async function eachChunk(
  n: number,
  options: ManifestScanOptions,
  step: (i: number) => Promise<boolean>,
): Promise<void> {
  let next = 0;
  let stop = false;
  const worker = async () => {
    while (!stop && next < n) {
      options.signal?.throwIfAborted();
      if (!(await step(next++))) stop = true;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.parallel ?? 4) }, worker));
}

/**
 * Computes the manifest of `source`: its fingerprint and the SHA-256 of each
 * chunk.
 */
export async function buildManifest(
  source: FingerprintSource,
  options: ManifestScanOptions = {},
): Promise<ChecksumManifest> {
  const chunkSize = options.chunkSize ?? DEFAULT_MANIFEST_CHUNK;
  checkChunkSize(chunkSize);
  const m = { templateSize: source.size, chunkSize };
  const n = manifestChunks(m);
  if (n > MAX_MANIFEST_CHUNKS) {
    throw new ManifestError(
      "MANIFEST_BAD_COUNT",
      `A ${source.size}-byte template needs ${n} chunks of ${chunkSize}; use a larger --chunk`,
    );
  }
  const hashes = new Uint8Array(n * HASH);
  let done = 0;
  await eachChunk(n, options, async (i) => {
    const at = i * chunkSize;
    const buf = new Uint8Array(Math.min(chunkSize, source.size - at));
    await source.read(at, buf);
    hashes.set(await sha256(buf), i * HASH);
    done += buf.length;
    options.onProgress?.(done, source.size);
    return true;
  });
  return { ...m, fingerprint: await templateFingerprint(source), hashes };
}

/** What {@linkcode verifyManifest} found. */
export interface ManifestVerifyResult {
  /** Whether every chunk matched. */
  ok: boolean;
  /** Chunks compared. */
  chunks: number;
  /** The offset of the first chunk that did not match (lowest offset), if any. */
  firstMismatch?: number;
}

/**
 * Compares `source` (a finished overlay, or any image) with `manifest`,
 * chunk by chunk; stops early at a mismatch but still reports the lowest
 * mismatching offset among the chunks read.
 *
 * @throws {ManifestError} `MANIFEST_WRONG_SIZE` when the sizes differ.
 */
export async function verifyManifest(
  source: FingerprintSource,
  manifest: ChecksumManifest,
  options: ManifestScanOptions = {},
): Promise<ManifestVerifyResult> {
  if (source.size !== manifest.templateSize) {
    throw new ManifestError(
      "MANIFEST_WRONG_SIZE",
      `Image is ${source.size} bytes; the manifest describes ${manifest.templateSize}`,
    );
  }
  const n = manifestChunks(manifest);
  let first: number | undefined;
  let chunks = 0;
  let done = 0;
  await eachChunk(n, options, async (i) => {
    const at = i * manifest.chunkSize;
    const buf = new Uint8Array(Math.min(manifest.chunkSize, source.size - at));
    await source.read(at, buf);
    chunks++;
    done += buf.length;
    options.onProgress?.(done, source.size);
    if (equal(await sha256(buf), hashAt(manifest, i))) return true;
    first = Math.min(first ?? Infinity, at);
    return false;
  });
  return first === undefined ? { ok: true, chunks } : { ok: false, chunks, firstMismatch: first };
}

/**
 * A {@linkcode CopyVerifier} over a manifest: every chunk a copy covers is
 * hashed and compared; a chunk the copy covers only in part is completed
 * with `readRest` (the chain's bytes) before hashing.
 */
export class ManifestVerifier implements CopyVerifier {
  /** The manifest checked against. */
  readonly manifest: ChecksumManifest;
  readonly #readRest: (offset: number, buf: Uint8Array) => Promise<void>;
  #checked = 0;

  /** Makes a verifier; `readRest` reads the template's bytes (the backing chain). */
  constructor(
    manifest: ChecksumManifest,
    readRest: (offset: number, buf: Uint8Array) => Promise<void>,
  ) {
    this.manifest = manifest;
    this.#readRest = readRest;
  }

  /** Chunks verified so far. */
  get chunksChecked(): number {
    return this.#checked;
  }

  /** Verifies `data` at `offset`; rejects with a {@linkcode ChecksumMismatchError}. */
  async check(offset: number, data: Uint8Array): Promise<void> {
    const { chunkSize, templateSize } = this.manifest;
    const end = Math.min(offset + data.length, templateSize);
    for (let i = Math.floor(offset / chunkSize); i * chunkSize < end; i++) {
      const at = i * chunkSize;
      const len = Math.min(chunkSize, templateSize - at);
      let chunk: Uint8Array;
      if (at >= offset && at + len <= offset + data.length) {
        chunk = data.subarray(at - offset, at - offset + len);
      } else {
        chunk = new Uint8Array(len);
        await this.#readRest(at, chunk);
        const from = Math.max(at, offset);
        const to = Math.min(at + len, offset + data.length);
        chunk.set(data.subarray(from - offset, to - offset), from - at);
      }
      if (!equal(await sha256(chunk), hashAt(this.manifest, i))) {
        throw new ChecksumMismatchError(at, len, "template chunk");
      }
      this.#checked++;
    }
  }
}
