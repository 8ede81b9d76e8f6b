/**
 * qedstream's downstream QMP extensions, named by qemu's convention for
 * them (`__RFQDN_name`, here `__com.qedstream_`): working-set-first
 * streaming, verified streaming and guest-first scheduling, plus recording a
 * working set while a guest boots.
 *
 * Commands (each answers `{}` unless said otherwise):
 *
 * - `__com.qedstream_block-stream`: every argument of `block-stream`, run by
 *   the `block-stream` handler already registered (so texts, events and
 *   ordering are the same), plus:
 *   - `working-set` (str): a working-set file (`block/working_set.ts`); its
 *     ranges are copied first, in order. It must belong to the device's
 *     backing chain (size and fingerprint), else `GenericError`;
 *   - `working-set-ranges` (array of `{offset, length}`): the same, given inline;
 *   - `manifest` (str): a checksum manifest (`qedstream manifest`); every
 *     copied chunk is verified, a mismatch is a read error of the chunk under
 *     `on-error` (`BLOCK_JOB_ERROR`, then qemu's `Input/output error`);
 *   - `guest-first` (bool, default false): serve guest reads that miss the
 *     overlay ahead of the stream's copies (`block/guest_first.ts`);
 *   - `guest-latency-target` (number, ms): with `guest-first`, the adaptive
 *     mode: the stream slows down while guest misses take longer.
 * - `__com.qedstream_record-working-set` `{device, file}`: records from now
 *   on the ranges guest reads on the device take from its backing chain.
 * - `__com.qedstream_stop-working-set` `{device}`: stops, fingerprints the
 *   backing chain, writes the file; returns `{file, ranges, bytes}`.
 *
 * Event: `__com.qedstream_CHECKSUM_MISMATCH` `{device, offset, desc}`, right
 * after the `BLOCK_JOB_ERROR` of a stream's first chunk that does not match
 * its manifest (the job's `error` stays qemu's `Input/output error`; this
 * names the offset).
 *
 * With `extendBlockStream`, `block-stream` itself also takes the extension
 * arguments as `__com.qedstream_working-set`, `__com.qedstream_manifest`,
 * `__com.qedstream_guest-first` and `__com.qedstream_guest-latency-target`
 * (its schema is redeclared, which moves it in `query-commands`; off by
 * default for byte-exact conformance).
 *
 * Register after `registerBlockCommands` (the extension calls its
 * `block-stream` handler).
 *
 * @module
 */

import type { BlockGraph } from "../block/graph.ts";
import { GuestFirstScheduler } from "../block/guest_first.ts";
import type { JobRegistry } from "../block/job_registry.ts";
import { decodeManifest, ManifestVerifier } from "../block/manifest.ts";
import type { BlockNode } from "../block/node.ts";
import { armStreamExtras, type StreamExtras, StreamJob } from "../block/stream_job.ts";
import { sameFingerprint, templateFingerprint } from "../block/template_fingerprint.ts";
import {
  type ByteRange,
  checkWorkingSetTemplate,
  decodeWorkingSet,
  encodeWorkingSet,
} from "../block/working_set.ts";
import { attachWorkingSetRecorder, WorkingSetRecorder } from "../block/working_set_recorder.ts";
import type { Clock } from "../io/clock.ts";
import { withQmpErrors } from "./block_error_map.ts";
import type { QmpCommandContext } from "./command_registry.ts";
import { genericError } from "./error.ts";
import { q, type QapiMember } from "./qapi_type.ts";
import { BLOCK_STREAM, type QmpCommandSchema } from "./schema.ts";
import type { QmpServer } from "./server.ts";

/** The prefix of qedstream's downstream names. */
export const QEDSTREAM_PREFIX = "__com.qedstream_";

/** What the extensions work on. */
export interface QedstreamExtensionsContext {
  /** The nodes and devices. */
  graph: BlockGraph;
  /** The jobs. */
  jobs: JobRegistry;
  /** The clock of guest-first scheduling (the jobs' clock). */
  clock: Clock;
}

/** Options of {@linkcode registerQedstreamExtensions}. */
export interface QedstreamExtensionsOptions {
  /** Also accept the extension arguments on `block-stream` itself. Default false. */
  extendBlockStream?: boolean;
  /** Reads a side file. Default `Deno.readFile`. */
  readFile?: (path: string) => Promise<Uint8Array>;
  /** Writes a side file. Default `Deno.writeFile`. */
  writeFile?: (path: string, data: Uint8Array) => Promise<void>;
}

/** The extension arguments, by their short names. */
const EXTENSION_MEMBERS = {
  "*working-set": q.str,
  "*working-set-ranges": q.array(
    q.struct("QedstreamByteRange", { offset: q.int, length: q.int }),
  ),
  "*manifest": q.str,
  "*guest-first": { type: q.bool, default: false },
  "*guest-latency-target": q.number,
};

interface ExtensionArgs {
  "working-set"?: string;
  "working-set-ranges"?: ByteRange[];
  manifest?: string;
  "guest-first"?: boolean;
  "guest-latency-target"?: number;
}

/** The schema of `__com.qedstream_block-stream`: `block-stream`'s members, then the extension's. */
export const QEDSTREAM_BLOCK_STREAM: QmpCommandSchema = {
  name: `${QEDSTREAM_PREFIX}block-stream`,
  args: {
    kind: "struct",
    name: `${QEDSTREAM_PREFIX}block-stream`,
    members: [
      ...BLOCK_STREAM.args.members,
      ...q.struct("x", EXTENSION_MEMBERS).members,
    ],
  },
  returns: "{}",
};

function prefixed(members: readonly QapiMember[]): QapiMember[] {
  return members.map((m) => ({ ...m, name: `${QEDSTREAM_PREFIX}${m.name}` }));
}

/**
 * Registers the extension commands and event on `server`; returns a
 * function that stops the event and ends every recording still running.
 *
 * @example
 * ```ts ignore
 * registerBlockCommands(server, { graph, jobs, clock });
 * registerQedstreamExtensions(server, { graph, jobs, clock });
 * // {"execute": "__com.qedstream_block-stream",
 * //  "arguments": {"device": "vda", "working-set": "boot.ws", "guest-first": true}}
 * ```
 */
export function registerQedstreamExtensions(
  server: QmpServer,
  context: QedstreamExtensionsContext,
  options: QedstreamExtensionsOptions = {},
): () => void {
  const { graph, clock } = context;
  const readFile = options.readFile ?? ((path: string) => Deno.readFile(path));
  const writeFile = options.writeFile ??
    ((path: string, data: Uint8Array) => Deno.writeFile(path, data));
  const original = server.commands.find("block-stream")?.handler;
  if (!original) {
    throw new TypeError("register the block commands before the qedstream extensions");
  }

  const read = async (path: string, what: string): Promise<Uint8Array> => {
    try {
      return await readFile(path);
    } catch (e) {
      throw genericError(`Could not read ${what} '${path}': ${(e as Error).message ?? e}`);
    }
  };

  /** The stream extras the arguments ask for, checked against the device's backing chain. */
  const extrasFor = async (top: BlockNode, ext: ExtensionArgs): Promise<StreamExtras> => {
    const template = top.backing;
    const extras: StreamExtras = {};
    if (ext["working-set"] !== undefined && ext["working-set-ranges"] !== undefined) {
      throw genericError(
        "'working-set' and 'working-set-ranges' cannot be specified at the same time",
      );
    }
    if (ext["working-set"] !== undefined) {
      const path = ext["working-set"];
      const ws = decodeWorkingSet(await read(path, "working set"));
      if (template) await checkWorkingSetTemplate(ws, template);
      extras.workingSet = ws.ranges;
    }
    if (ext["working-set-ranges"] !== undefined) extras.workingSet = ext["working-set-ranges"];
    if (ext.manifest !== undefined && template) {
      const m = decodeManifest(await read(ext.manifest, "manifest"));
      const ok = m.templateSize === template.size &&
        sameFingerprint(m.fingerprint, await templateFingerprint(template));
      if (!ok) {
        throw genericError(
          `Manifest '${ext.manifest}' does not describe the backing chain of '${top.nodeName}'`,
        );
      }
      extras.verifier = new ManifestVerifier(m, (offset, buf) => template.read(offset, buf));
    }
    if (ext["guest-latency-target"] !== undefined && !ext["guest-first"]) {
      throw genericError("'guest-latency-target' needs 'guest-first'");
    }
    if (ext["guest-first"]) {
      const target = ext["guest-latency-target"];
      extras.guestFirst = new GuestFirstScheduler({
        clock,
        ...(target !== undefined ? { adaptive: { targetLatencyMs: target } } : {}),
      });
    }
    return extras;
  };

  /** Runs `block-stream`'s handler with `extras` armed on the device's top. */
  const streamWith = async (
    blockStreamArgs: Record<string, unknown>,
    ext: ExtensionArgs,
    qmp: QmpCommandContext,
  ): Promise<unknown> => {
    const { node } = graph.lookup(String(blockStreamArgs.device));
    const disarm = armStreamExtras(node, await extrasFor(node, ext));
    try {
      return await original(blockStreamArgs, qmp);
    } finally {
      disarm();
    }
  };

  server.commands.register<Record<string, unknown>>(
    QEDSTREAM_BLOCK_STREAM,
    withQmpErrors((args, qmp) => {
      const { rest, ext } = split(args, "");
      return streamWith(rest, ext, qmp);
    }),
  );

  if (options.extendBlockStream) {
    server.commands.register<Record<string, unknown>>(
      {
        ...BLOCK_STREAM,
        args: {
          ...BLOCK_STREAM.args,
          members: [
            ...BLOCK_STREAM.args.members,
            ...prefixed(q.struct("x", EXTENSION_MEMBERS).members),
          ],
        },
      },
      withQmpErrors((args, qmp) => {
        const { rest, ext } = split(args, QEDSTREAM_PREFIX);
        return streamWith(rest, ext, qmp);
      }),
    );
  }

  const recordings = new Map<
    BlockNode,
    { recorder: WorkingSetRecorder; file: string; detach: () => void }
  >();

  server.commands.register<{ device: string; file: string }>(
    {
      name: `${QEDSTREAM_PREFIX}record-working-set`,
      args: q.struct(`${QEDSTREAM_PREFIX}record-working-set`, { device: q.str, file: q.str }),
      returns: "{}",
    },
    withQmpErrors((args) => {
      const { node } = graph.lookup(args.device);
      if (!node.backing) {
        throw genericError(`'${args.device}' has no backing file to record reads of`);
      }
      if (recordings.has(node)) {
        throw genericError(`A working set of '${args.device}' is already being recorded`);
      }
      const recorder = new WorkingSetRecorder();
      recordings.set(node, {
        recorder,
        file: args.file,
        detach: attachWorkingSetRecorder(node, recorder),
      });
      return {};
    }),
  );

  server.commands.register<{ device: string }>(
    {
      name: `${QEDSTREAM_PREFIX}stop-working-set`,
      args: q.struct(`${QEDSTREAM_PREFIX}stop-working-set`, { device: q.str }),
      returns: "{file, ranges, bytes}",
    },
    withQmpErrors(async (args) => {
      const { node } = graph.lookup(args.device);
      const rec = recordings.get(node);
      if (!rec) throw genericError(`No working set of '${args.device}' is being recorded`);
      recordings.delete(node);
      rec.detach();
      const template = node.backing;
      if (!template) throw genericError(`'${args.device}' no longer has a backing file`);
      const ws = await rec.recorder.finish(template);
      try {
        await writeFile(rec.file, encodeWorkingSet(ws));
      } catch (e) {
        throw genericError(`Could not write '${rec.file}': ${(e as Error).message ?? e}`);
      }
      return { file: rec.file, ranges: ws.ranges.length, bytes: rec.recorder.bytes };
    }),
  );

  const reported = new WeakSet<StreamJob>();
  const stopEvents = context.jobs.on((event, job) => {
    if (event.event !== "BLOCK_JOB_ERROR" || !(job instanceof StreamJob)) return;
    const mismatch = job.checksumMismatch;
    if (!mismatch || reported.has(job)) return;
    reported.add(job);
    server.emitEvent(`${QEDSTREAM_PREFIX}CHECKSUM_MISMATCH`, {
      device: job.id,
      offset: mismatch.offset,
      desc: mismatch.message,
    });
  });

  return () => {
    stopEvents();
    for (const rec of recordings.values()) rec.detach();
    recordings.clear();
  };
}

/** Splits checked arguments into `block-stream`'s and the extension's (named with `prefix`). */
function split(
  args: Record<string, unknown>,
  prefix: string,
): { rest: Record<string, unknown>; ext: ExtensionArgs } {
  const rest: Record<string, unknown> = {};
  const ext: Record<string, unknown> = {};
  const names = new Set(Object.keys(EXTENSION_MEMBERS).map((k) => k.slice(1)));
  for (const [key, value] of Object.entries(args)) {
    const short = key.startsWith(prefix) ? key.slice(prefix.length) : undefined;
    if (short !== undefined && names.has(short)) ext[short] = value;
    else rest[key] = value;
  }
  return { rest, ext: ext as ExtensionArgs };
}
