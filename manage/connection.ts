/**
 * What the management API needs of a QMP connection: a command and its
 * answer, and optionally events. {@linkcode QmpClient} from `qmp/` provides
 * both, against qedstream and against a real qemu-storage-daemon alike.
 *
 * @module
 */

import { fromQmpError } from "./error.ts";

/** A connection that runs QMP commands. */
export interface QmpConnection {
  /**
   * Runs `command` with `args` and resolves with its `return` value; rejects
   * with an error carrying qemu's `class` and `desc` when the server refuses.
   */
  execute(command: string, args?: Record<string, unknown>): Promise<unknown>;
}

/** A QMP event as a client delivers it. */
export interface QmpEventMessage {
  /** The event name, e.g. `BLOCK_JOB_COMPLETED`. */
  event: string;
  /** Its data. */
  data?: Record<string, unknown>;
}

/**
 * A connection that also delivers events (as {@linkcode QmpClient} does):
 * `waitEvent` takes the first matching event, buffered or yet to come.
 */
export interface QmpEventConnection extends QmpConnection {
  /** Waits for the first event `name` passing `filter`; rejects on timeout or abort. */
  waitEvent(
    name: string,
    options?: {
      timeout?: number;
      filter?: (event: QmpEventMessage & { data: Record<string, unknown> }) => boolean;
      signal?: AbortSignal;
    },
  ): Promise<QmpEventMessage>;
}

/** Whether `conn` delivers events. */
export function hasEvents(conn: QmpConnection): conn is QmpEventConnection {
  return typeof (conn as Partial<QmpEventConnection>).waitEvent === "function";
}

/** Runs a command, turning a QMP refusal into a {@linkcode ManageError} in libvirt's words. */
export async function execute<T>(
  conn: QmpConnection,
  command: string,
  args?: Record<string, unknown>,
): Promise<T> {
  try {
    return (await (args === undefined ? conn.execute(command) : conn.execute(command, args))) as T;
  } catch (e) {
    throw fromQmpError(command, e);
  }
}

/** An entry of `query-block-jobs`, as qemu 7.2 returns it. */
export interface BlockJobEntry {
  /** The job type: `stream`, `commit`, `mirror`, `backup`. */
  type: string;
  /** The job id (qemu's historic name for it). */
  device: string;
  /** Total progress (bytes for a stream). */
  len: number;
  /** Progress so far. */
  offset: number;
  /** Whether the job is doing work right now (false while sleeping or paused). */
  busy: boolean;
  /** Whether a user pause is in force. */
  paused: boolean;
  /** The speed limit in bytes per second; 0 is none. */
  speed: number;
  /** `ok`, `failed` or `nospace`: why the `stop` error policy paused the job. */
  "io-status": string;
  /** Whether the job can be completed (mirror's ready state). */
  ready: boolean;
  /** The job status (`running`, `paused`, `concluded`, ...). */
  status: string;
  /** Whether the job finalizes by itself. */
  "auto-finalize": boolean;
  /** Whether the job is dismissed by itself. */
  "auto-dismiss": boolean;
  /** The error of a concluded job that failed. */
  error?: string;
}

/** The image description inside `query-named-block-nodes` (`ImageInfo`, the members read here). */
export interface ImageInfo {
  /** The image's file name (a path or a URI). */
  filename: string;
  /** The format driver (`qed`, `raw`, ...). */
  format: string;
  /** The guest-visible size in bytes. */
  "virtual-size": number;
  /** The next image down the backing chain. */
  "backing-image"?: ImageInfo;
}

/** An entry of `query-named-block-nodes` (the members the management API reads). */
export interface NamedBlockNode {
  /** The node name. */
  "node-name": string;
  /** The driver. */
  drv: string;
  /** The file name. */
  file: string;
  /** The backing file the image names, if any. */
  "backing_file"?: string;
  /** How many images are below it. */
  "backing_file_depth": number;
  /** Whether it is read-only. */
  ro: boolean;
  /** Its image and backing chain. */
  image: ImageInfo;
}

/** An entry of `query-block` (a BlockBackend; qemu-storage-daemon has none). */
export interface BlockEntry {
  /** The BlockBackend's name. */
  device: string;
  /** The guest device's id. */
  qdev?: string;
  /** The medium: its top node, file and image. */
  inserted?: { "node-name": string; file: string; image: ImageInfo };
}
