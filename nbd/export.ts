/**
 * What an {@linkcode NbdServer} serves: any object with a size and
 * positional I/O plus block status — a `block/` node, a QED or raw image, a
 * memory disk.
 *
 * `blockStatus` describes what reads return, for the whole view the export
 * shows: `data` is served as data; `zero` and `unallocated` are both
 * reported as `NBD_STATE_HOLE | NBD_STATE_ZERO` (as qemu-nbd reports zero
 * clusters and unallocated areas) and sent as holes in structured reads. So
 * an adapter over a node with a backing file must report the backing file's
 * data as `data`, not `unallocated`.
 *
 * @module
 */

/** The kinds of run a target reports. */
export type NbdExportStatusKind = "data" | "zero" | "unallocated";

/** The block device behind an export. Offsets and lengths are always inside `size`. */
export interface NbdExportTarget {
  /** Size in bytes (read at every request, so it may change). */
  readonly size: number;
  /** Fills `buf` from `offset`. */
  read(offset: number, buf: Uint8Array): Promise<void>;
  /** Writes `data` at `offset`. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes `[offset, offset + length)` read as zeros. */
  writeZeroes(offset: number, length: number): Promise<void>;
  /** Makes completed writes durable. */
  flush(): Promise<void>;
  /** The run starting at `offset` (1 ≤ its length ≤ `length`). */
  blockStatus(
    offset: number,
    length: number,
  ): Promise<{ kind: NbdExportStatusKind; length: number }>;
}

/** One named export of a server. */
export interface NbdExportOptions {
  /** Export name clients ask for (qemu's `name=`); `""` is the default export. */
  name: string;
  /** The device served. */
  target: NbdExportTarget;
  /** Shown by `NBD_OPT_LIST` and `NBD_INFO_DESCRIPTION` (default none). */
  description?: string;
  /** Refuse write, write-zeroes and trim with `NBD_EPERM` (default `false`; qemu-storage-daemon's `writable=off` maps to `true`). */
  readOnly?: boolean;
  /** Minimum block size, a power of two ≤ 64 KiB (default 1: any byte offset). */
  minimumBlock?: number;
  /** Preferred block size (default 4096). */
  preferredBlock?: number;
  /** Largest read or write payload (default and maximum 32 MiB). */
  maximumPayload?: number;
}
