/**
 * Storage on a real file: the one adapter that touches the file system.
 *
 * @module
 */

import { readSync, writeSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { StorageError } from "./error.ts";
import type { Storage } from "./storage.ts";

/** How to open a file as {@linkcode FileStorage}. */
export interface FileStorageOptions {
  /** Open for reading only. Default `false`. */
  readOnly?: boolean;
  /** Create the file (failing if it exists unless `truncate`). Default `false`. */
  create?: boolean;
  /** Cut an existing file to zero length when creating. Default `false`. */
  truncate?: boolean;
  /**
   * Write-behind: after this many bytes written since the last flush began,
   * start one in the background (`fdatasync` in a worker thread, never
   * awaited by writes), so the disk writes while the caller keeps copying
   * and the caller's own flush finds little left to do. Its failure is
   * reported by the next {@linkcode FileStorage.flush}. Default `0` (off:
   * nothing is flushed unless asked, as qemu's `cache=writeback`).
   */
  writeBehind?: number;
}

function ioError(what: string, path: string, cause: unknown): StorageError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  const code = (cause as { code?: string })?.code ?? "EIO";
  return new StorageError(`STORAGE_${code}`, `Could not ${what} '${path}': ${detail}`, { cause });
}

/**
 * A file as {@linkcode Storage}, with positional I/O (`pread`/`pwrite`), so
 * concurrent requests never race on a shared file position.
 *
 * @example
 * ```ts
 * import { FileStorage } from "./file_storage.ts";
 * const path = await Deno.makeTempFile();
 * const file = await FileStorage.open(path);
 * await file.write(0, new TextEncoder().encode("hello"));
 * console.log(await file.size()); // 5
 * await file.close();
 * await Deno.remove(path);
 * ```
 */
export class FileStorage implements Storage {
  /** The path the file was opened at. */
  readonly path: string;
  /** Whether writes, flushes and truncation are refused. */
  readonly readOnly: boolean;
  #handle: FileHandle;
  readonly #writeBehind: number;
  /** Bytes written since the last flush (ours or a background one) began. */
  #unflushed = 0;
  #background: Promise<void> | undefined;
  #backgroundError: StorageError | undefined;
  #backgroundFlushes = 0;

  private constructor(path: string, handle: FileHandle, readOnly: boolean, writeBehind: number) {
    this.path = path;
    this.#handle = handle;
    this.readOnly = readOnly;
    this.#writeBehind = writeBehind;
  }

  /** Opens (or creates) the file at `path`. */
  static async open(path: string, options: FileStorageOptions = {}): Promise<FileStorage> {
    const readOnly = options.readOnly ?? false;
    const writeBehind = options.writeBehind ?? 0;
    if (!Number.isSafeInteger(writeBehind) || writeBehind < 0) {
      throw new StorageError(
        "STORAGE_BAD_OPTION",
        `Write-behind of ${writeBehind} bytes for '${path}' is not a byte count`,
      );
    }
    const flags = options.create ? (options.truncate ? "w+" : "wx+") : readOnly ? "r" : "r+";
    try {
      return new FileStorage(path, await open(path, flags, 0o644), readOnly, writeBehind);
    } catch (e) {
      throw ioError("open", path, e);
    }
  }

  // Reads and writes use positional synchronous calls on purpose: on cached
  // pages a pread/pwrite costs a few microseconds, while Deno's asynchronous
  // node:fs calls cost tens (a thread-pool hop per request), which would make
  // every image format slower than the disk. fdatasync stays asynchronous.
  read(offset: number, buf: Uint8Array): Promise<number> {
    let done = 0;
    try {
      while (done < buf.length) {
        const n = readSync(this.#handle.fd, buf, done, buf.length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      return Promise.reject(ioError("read", this.path, e));
    }
    return Promise.resolve(done);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (this.readOnly) {
      return Promise.reject(
        new StorageError("STORAGE_READ_ONLY", `Could not write '${this.path}': read-only`),
      );
    }
    let done = 0;
    try {
      while (done < data.length) {
        done += writeSync(this.#handle.fd, data, done, data.length - done, offset + done);
      }
    } catch (e) {
      return Promise.reject(ioError("write", this.path, e));
    }
    this.#unflushed += data.length;
    if (this.#writeBehind > 0 && this.#unflushed >= this.#writeBehind && !this.#background) {
      this.#startBackgroundFlush();
    }
    return Promise.resolve();
  }

  /** How many write-behind flushes were started. */
  get backgroundFlushes(): number {
    return this.#backgroundFlushes;
  }

  #startBackgroundFlush(): void {
    this.#backgroundFlushes++;
    this.#unflushed = 0;
    this.#background = this.#handle.datasync().then(
      () => {},
      (e) => {
        // Linux reports a writeback error to one fdatasync only: keep it for
        // the next flush(), or the caller would believe its data durable.
        this.#backgroundError ??= ioError("flush", this.path, e);
      },
    ).finally(() => this.#background = undefined);
  }

  async flush(): Promise<void> {
    if (this.readOnly) return;
    // A running background flush may be the one the kernel tells of an error.
    await this.#background;
    const failed = this.#backgroundError;
    this.#backgroundError = undefined;
    this.#unflushed = 0;
    try {
      await this.#handle.datasync();
    } catch (e) {
      throw ioError("flush", this.path, e);
    }
    if (failed) throw failed;
  }

  async size(): Promise<number> {
    try {
      return (await this.#handle.stat()).size;
    } catch (e) {
      throw ioError("stat", this.path, e);
    }
  }

  async truncate(length: number): Promise<void> {
    try {
      await this.#handle.truncate(length);
    } catch (e) {
      throw ioError("truncate", this.path, e);
    }
  }

  async close(): Promise<void> {
    await this.#background;
    try {
      await this.#handle.close();
    } catch (e) {
      throw ioError("close", this.path, e);
    }
  }
}
