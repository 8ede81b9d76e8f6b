/**
 * The `quorum` driver of qemu 7.2: one node over several children that hold
 * the same data, which reads by majority vote and writes to every child.
 *
 * ```
 *                       quorum (vote-threshold = 2)
 *            ┌──────────────────┼──────────────────┐
 *         child 0            child 1            child 2
 *   read: all three are read; identical contents form a version; the version
 *         with the most votes wins if it has at least 2, else the read fails
 *  write: all three are written; it succeeds if at least 2 children succeed
 * ```
 *
 * The rules, as qemu applies them (`read-pattern=quorum`, the default):
 *
 * 1. every child is read into its own buffer, in parallel; a child that
 *    fails is reported (`QUORUM_REPORT_BAD` with `error`) as it completes;
 * 2. when fewer children than the threshold succeeded, `QUORUM_FAILURE` is
 *    reported and the read fails with the errno most children failed with;
 * 3. when every successful read agrees, that is the answer (no vote);
 * 4. otherwise the contents are tallied into versions. qemu keeps the
 *    versions newest first and takes the first with the most votes, so a tie
 *    goes to the version whose first reader has the highest index; if the
 *    winner has fewer votes than the threshold, `QUORUM_FAILURE` and `EIO`;
 * 5. every child of a losing version is reported (no `error`), versions
 *    newest first and, within one, the highest index first; with
 *    `rewrite-corrupted` they are rewritten with the winner before the read
 *    returns (a failed rewrite is ignored).
 *
 * `read-pattern=fifo` reads the children in order and returns the first
 * success, reporting each child that failed before it. Writes and write
 * zeroes go to every child at once; flushes go to one child after the
 * other and never report a `QUORUM_FAILURE` (qemu's asymmetry, kept).
 * `blkverify` (two children, threshold 2) treats any difference as fatal.
 *
 * Errno voting (steps 2 and the failed writes) uses the same tally over the
 * children's error kinds, so `EIO` against `ENOSPC` goes to the later child.
 *
 * Each child is accessed through a {@linkcode BlockDevice}, so requests are
 * tracked on the child as qemu tracks them on a `BdrvChild`, and a stream
 * job's copy-on-read filter above a child applies to the quorum's reads too.
 *
 * @module
 */

import { BlockDevice } from "./device.ts";
import {
  BlockError,
  checkRequestRange,
  IO_ERROR_TEXT,
  type IoErrorKind,
  ioErrorKind,
} from "./error.ts";
import type { BlockNode, BlockStatus } from "./node.ts";

/** The read patterns of qemu's `QuorumReadPattern`. */
export const QUORUM_READ_PATTERNS = ["quorum", "fifo"] as const;

/** How a quorum reads: vote among all children, or the first child that answers. */
export type QuorumReadPattern = typeof QUORUM_READ_PATTERNS[number];

/** qemu's `QuorumOpType`: the operation a `QUORUM_REPORT_BAD` is about. */
export type QuorumOpType = "read" | "write" | "flush";

/** The data of `QUORUM_REPORT_BAD`, members in qemu's QAPI order. */
export interface QuorumReportBadData {
  /** The operation that failed or disagreed. */
  type: QuorumOpType;
  /** The C library's text for the child's errno; absent when the child read other contents. */
  error?: string;
  /** The child's node name. */
  "node-name": string;
  /** The first 512-byte sector of the request (0 for a flush). */
  "sector-num": number;
  /** The sectors the request touched (0 for a flush). */
  "sectors-count": number;
}

/** The data of `QUORUM_FAILURE`, members in qemu's QAPI order. */
export interface QuorumFailureData {
  /** The quorum's device or node name. */
  reference: string;
  /** The first 512-byte sector of the request. */
  "sector-num": number;
  /** The sectors the request touched. */
  "sectors-count": number;
}

/** An event of a quorum node, named and shaped as qemu's monitor sends it. */
export type QuorumEvent =
  | { event: "QUORUM_REPORT_BAD"; data: QuorumReportBadData }
  | { event: "QUORUM_FAILURE"; data: QuorumFailureData };

/** The voting options of a quorum, named after qemu's `BlockdevOptionsQuorum`. */
export interface QuorumSettings {
  /** Children that must agree (`vote-threshold`), from 1 to the number of children. */
  voteThreshold: number;
  /** `read-pattern`. Default `"quorum"`. */
  readPattern?: QuorumReadPattern;
  /** `rewrite-corrupted`: rewrite children that lost a vote with the winner. Default false; ignored with `fifo`. */
  rewriteCorrupted?: boolean;
  /** `blkverify`: any difference between the two children is fatal. Default false; ignored with `fifo`. */
  blkverify?: boolean;
}

/**
 * Checks a quorum's settings for `childCount` children in qemu's order, with
 * qemu's texts, and returns them defaulted. With `fifo` qemu never looks at
 * `blkverify` or `rewrite-corrupted`, so they are returned off.
 *
 * @example
 * ```ts
 * import { checkQuorumSettings } from "./quorum.ts";
 * try {
 *   checkQuorumSettings(3, { voteThreshold: 4 });
 * } catch (e) {
 *   console.log((e as Error).message); // threshold may not exceed children count
 * }
 * ```
 */
export function checkQuorumSettings(
  childCount: number,
  settings: QuorumSettings,
): Required<QuorumSettings> {
  const bad = (message: string) => new BlockError("QUORUM_BAD_OPTION", message);
  if (childCount < 1) throw bad("Number of provided children must be 1 or more");
  const threshold = settings.voteThreshold;
  if (!Number.isSafeInteger(threshold) || threshold < 1) {
    throw bad("Parameter 'vote-threshold' expects a value >= 1");
  }
  if (threshold > childCount) throw bad("threshold may not exceed children count");
  const readPattern = settings.readPattern ?? "quorum";
  if (!(QUORUM_READ_PATTERNS as readonly string[]).includes(readPattern)) {
    throw bad("Please set read-pattern as fifo or quorum");
  }
  if (readPattern === "fifo") {
    return { voteThreshold: threshold, readPattern, rewriteCorrupted: false, blkverify: false };
  }
  const blkverify = settings.blkverify ?? false;
  if (blkverify && (childCount !== 2 || threshold !== 2)) {
    throw bad(
      "blkverify=on can only be set if there are exactly two files and vote-threshold is 2",
    );
  }
  const rewriteCorrupted = settings.rewriteCorrupted ?? false;
  if (rewriteCorrupted && blkverify) {
    throw bad("rewrite-corrupted=on cannot be used with blkverify=on");
  }
  return { voteThreshold: threshold, readPattern, rewriteCorrupted, blkverify };
}

/** Options of {@linkcode quorumNode}. */
export interface QuorumNodeOptions extends QuorumSettings {
  /** The node name (also the `reference` of `QUORUM_FAILURE`). */
  nodeName: string;
  /** The children, in order (qemu's `children.0`, `children.1`, ...); all of one size. */
  children: readonly BlockNode[];
  /** Refuse writes. Default: read-only when any child is. */
  readOnly?: boolean;
  /** Receives `QUORUM_REPORT_BAD` and `QUORUM_FAILURE`. Default: they are dropped. */
  onEvent?: (event: QuorumEvent) => void;
  /** The filename to show. Default: a `json:` description of the children's drivers and filenames. */
  filename?: string;
}

/** One version of the contents in a vote (or one errno): who read it, highest index first. */
interface Version<T> {
  value: T;
  voters: number[];
}

/**
 * Tallies `entries` (child index, value) into versions as qemu does: a new
 * version goes to the front of the list, a voter to the front of its version.
 */
function tally<T>(entries: [number, T][], same: (a: T, b: T) => boolean): Version<T>[] {
  const versions: Version<T>[] = [];
  for (const [index, value] of entries) {
    let version = versions.find((v) => same(v.value, value));
    if (!version) versions.unshift(version = { value, voters: [] });
    version.voters.unshift(index);
  }
  return versions;
}

/** The first version with strictly the most votes (qemu's `quorum_get_vote_winner`). */
function winnerOf<T>(versions: Version<T>[]): Version<T> {
  let winner = versions[0]!;
  for (const v of versions) if (v.voters.length > winner.voters.length) winner = v;
  return winner;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i;
}

/** The 512-byte sectors a request covers, as qemu's quorum events count them. */
function sectors(
  offset: number,
  length: number,
): { "sector-num": number; "sectors-count": number } {
  const first = Math.floor(offset / 512);
  return { "sector-num": first, "sectors-count": Math.ceil((offset + length) / 512) - first };
}

type Outcome = { ok: true; data: Uint8Array } | { ok: false; error: unknown };

/**
 * A quorum node (driver `quorum`). Create it with {@linkcode quorumNode}.
 * Closing it leaves the children open: whoever opened them closes them.
 */
export class QuorumNode implements BlockNode {
  readonly nodeName: string;
  readonly driver = "quorum";
  readonly filename: string;
  readonly readOnly: boolean;
  readonly backing: null = null;
  /** The children, in order. */
  readonly children: readonly BlockNode[];
  /** The settings in force (defaults applied). */
  readonly settings: Readonly<Required<QuorumSettings>>;
  readonly #devices: BlockDevice[];
  readonly #onEvent: (event: QuorumEvent) => void;

  /** Use {@linkcode quorumNode}. */
  constructor(options: QuorumNodeOptions) {
    this.settings = checkQuorumSettings(options.children.length, options);
    this.nodeName = options.nodeName;
    this.children = [...options.children];
    const size = this.children[0]!.size;
    // qemu's quorum_getlength: children of different lengths are an I/O error at open.
    if (this.children.some((c) => c.size !== size)) {
      throw new BlockError(
        "EIO",
        "Could not refresh total sector count: Input/output error",
      );
    }
    this.readOnly = options.readOnly ?? this.children.some((c) => c.readOnly);
    this.filename = options.filename ?? describe(this.children, this.settings.voteThreshold);
    this.#devices = this.children.map((c) => new BlockDevice(c));
    this.#onEvent = options.onEvent ?? (() => {});
  }

  /** The size of the children. */
  get size(): number {
    return this.children[0]!.size;
  }

  /**
   * Reads by vote (`quorum`) or from the first child that answers (`fifo`).
   * A vote holds one copy of the request per child, as qemu does.
   */
  async read(offset: number, buf: Uint8Array): Promise<void> {
    this.#checkRange(offset, buf.length);
    if (buf.length === 0) return;
    if (this.settings.readPattern === "fifo") return await this.#readFifo(offset, buf);
    await this.#readQuorum(offset, buf);
  }

  /** Writes to every child; fails when fewer than the threshold succeed. */
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#writeAll(offset, data.length, (d) => d.write(offset, data));
  }

  /** Writes zeroes to every child; fails when fewer than the threshold succeed. */
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.#writeAll(offset, length, (d) => d.writeZeroes(offset, length));
  }

  /** Flushes the children one after the other; fails when fewer than the threshold succeed. */
  async flush(): Promise<void> {
    const failed: [number, unknown][] = [];
    for (const [i, device] of this.#devices.entries()) {
      try {
        await device.flush();
      } catch (error) {
        this.#reportBad("flush", 0, 0, i, error);
        failed.push([i, error]);
      }
    }
    if (this.children.length - failed.length < this.settings.voteThreshold) {
      throw votedError(failed);
    }
  }

  /**
   * `zero` when every child's chain reads zeros (for the shortest such run),
   * else `data` (for the longest data run), as qemu's quorum answers; a child
   * that fails is reported and makes the whole range data.
   */
  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    this.#checkRange(offset, 1);
    const n = Math.max(1, Math.min(length, this.size - offset));
    let zero = n;
    let data = 0;
    for (const [i, device] of this.#devices.entries()) {
      let kind: string;
      let run: number;
      try {
        ({ kind, length: run } = await device.blockStatus(offset, n));
      } catch (error) {
        this.#reportBad("read", offset, n, i, error);
        data = n;
        break;
      }
      if (kind === "data") data = Math.max(data, run);
      else zero = Math.min(zero, run);
    }
    return data > 0 ? { kind: "data", length: data } : { kind: "zero", length: zero };
  }

  /** Releases nothing: the children belong to whoever opened them. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  async #readFifo(offset: number, buf: Uint8Array): Promise<void> {
    let last: unknown;
    for (const [i, device] of this.#devices.entries()) {
      try {
        return await device.read(offset, buf);
      } catch (error) {
        this.#reportBad("read", offset, buf.length, i, error);
        last = error;
      }
    }
    throw ioError(ioErrorKind(last), last);
  }

  async #readQuorum(offset: number, buf: Uint8Array): Promise<void> {
    const threshold = this.settings.voteThreshold;
    const outcomes: Outcome[] = await Promise.all(
      this.#devices.map(async (device, i): Promise<Outcome> => {
        const data = new Uint8Array(buf.length);
        try {
          await device.read(offset, data);
          return { ok: true, data };
        } catch (error) {
          this.#reportBad("read", offset, buf.length, i, error);
          return { ok: false, error };
        }
      }),
    );
    const read: [number, Uint8Array][] = [];
    const failed: [number, unknown][] = [];
    for (const [i, o] of outcomes.entries()) {
      if (o.ok) read.push([i, o.data]);
      else failed.push([i, o.error]);
    }
    if (read.length < threshold) {
      this.#reportFailure(offset, buf.length);
      throw votedError(failed);
    }
    const [, first] = read[0]!;
    const differing = read.find(([, data]) => !sameBytes(first, data));
    if (!differing) return void buf.set(first);
    if (this.settings.blkverify) {
      // qemu prints this and exits; a library cannot, so the read fails instead.
      throw new BlockError(
        "EIO",
        `quorum: offset=${offset} bytes=${buf.length} contents mismatch at offset ${
          offset + firstDifference(first, differing[1])
        }`,
      );
    }
    const versions = tally(read, sameBytes);
    const winner = winnerOf(versions);
    if (winner.voters.length < threshold) {
      this.#reportFailure(offset, buf.length);
      throw ioError("EIO");
    }
    buf.set(winner.value);
    const losers = versions.filter((v) => v !== winner).flatMap((v) => v.voters);
    for (const i of losers) this.#reportBad("read", offset, buf.length, i);
    if (this.settings.rewriteCorrupted) {
      await Promise.all(
        losers.map((i) => this.#devices[i]!.write(offset, winner.value).catch(() => {})),
      );
    }
  }

  async #writeAll(
    offset: number,
    length: number,
    io: (device: BlockDevice) => Promise<void>,
  ): Promise<void> {
    if (this.readOnly) {
      throw new BlockError("READ_ONLY", `Node '${this.nodeName}' is read only`);
    }
    this.#checkRange(offset, length);
    const failed: [number, unknown][] = [];
    await Promise.all(this.#devices.map(async (device, i) => {
      try {
        await io(device);
      } catch (error) {
        this.#reportBad("write", offset, length, i, error);
        failed.push([i, error]);
      }
    }));
    if (this.children.length - failed.length < this.settings.voteThreshold) {
      this.#reportFailure(offset, length);
      failed.sort(([a], [b]) => a - b);
      throw votedError(failed);
    }
  }

  /** A request outside the node is the caller's error, not a child's: no child is asked. */
  #checkRange(offset: number, length: number): void {
    checkRequestRange(offset, length, this.size, "node");
  }

  #reportBad(
    type: QuorumOpType,
    offset: number,
    length: number,
    child: number,
    error?: unknown,
  ): void {
    const data: QuorumReportBadData = {
      type,
      ...(error === undefined ? {} : { error: IO_ERROR_TEXT[ioErrorKind(error)] }),
      "node-name": this.children[child]!.nodeName,
      ...(type === "flush" ? sectors(0, 0) : sectors(offset, length)),
    };
    this.#onEvent({ event: "QUORUM_REPORT_BAD", data });
  }

  #reportFailure(offset: number, length: number): void {
    this.#onEvent({
      event: "QUORUM_FAILURE",
      data: { reference: this.nodeName, ...sectors(offset, length) },
    });
  }
}

/** The error of a failed operation: the errno most children failed with (ties to the later child). */
function votedError(failed: [number, unknown][]): BlockError {
  const kinds = tally(
    failed.map(([i, e]): [number, IoErrorKind] => [i, ioErrorKind(e)]),
    (a, b) => a === b,
  );
  const kind = winnerOf(kinds).value;
  return ioError(kind, failed.find(([, e]) => ioErrorKind(e) === kind)?.[1]);
}

function ioError(kind: IoErrorKind, cause?: unknown): BlockError {
  return new BlockError(kind, IO_ERROR_TEXT[kind], cause === undefined ? undefined : { cause });
}

function describe(children: readonly BlockNode[], threshold: number): string {
  const list = children.map((c) => `{"driver": "${c.driver}", "filename": "${c.filename}"}`);
  return `json:{"children": [${
    list.join(", ")
  }], "driver": "quorum", "vote-threshold": ${threshold}}`;
}

/**
 * Makes a quorum node over `options.children`, after checking the settings
 * with qemu's texts (see {@linkcode checkQuorumSettings}) and that the
 * children have one size.
 *
 * @example Two children agree, the third is outvoted and reported
 * ```ts
 * import { MemoryStorage } from "../io/mod.ts";
 * import { RawImage } from "../qed/mod.ts";
 * import { quorumNode, rawNode } from "./mod.ts";
 * const child = async (name: string, fill: number) =>
 *   rawNode(await RawImage.open(new MemoryStorage(new Uint8Array(4096).fill(fill))), {
 *     nodeName: name,
 *   });
 * const quorum = quorumNode({
 *   nodeName: "qu",
 *   children: [await child("c0", 1), await child("c1", 1), await child("c2", 9)],
 *   voteThreshold: 2,
 *   onEvent: (e) => console.log(e.event, e.data["sector-num"]),
 * });
 * const buf = new Uint8Array(512);
 * await quorum.read(0, buf); // QUORUM_REPORT_BAD 0
 * console.log(buf[0]); // 1
 * ```
 */
export function quorumNode(options: QuorumNodeOptions): QuorumNode {
  return new QuorumNode(options);
}
