/**
 * The emulated machine behind `qedstream serve`: block nodes built from
 * `--blockdev`, QMP monitors, NBD exports, working sets given or recorded
 * per node, and a clean shutdown.
 *
 * @module
 */

import { BlockDevice } from "../block/device.ts";
import { BlockGraph } from "../block/graph.ts";
import { JobRegistry } from "../block/job_registry.ts";
import type { BlockNode } from "../block/node.ts";
import { armStreamExtras } from "../block/stream_job.ts";
import { templateFingerprint } from "../block/template_fingerprint.ts";
import {
  type ByteRange,
  checkWorkingSetTemplate,
  decodeWorkingSet,
  encodeWorkingSet,
} from "../block/working_set.ts";
import { attachWorkingSetRecorder, WorkingSetRecorder } from "../block/working_set_recorder.ts";
import { type Clock, systemClock } from "../io/clock.ts";
import { QedstreamError } from "../io/error.ts";
import type { NbdAddress } from "../nbd/address.ts";
import { NbdServer } from "../nbd/server.ts";
import { registerBlockCommands } from "../qmp/block_commands.ts";
import { QEDSTREAM_PREFIX, registerQedstreamExtensions } from "../qmp/qedstream_extensions.ts";
import { QmpServer } from "../qmp/server.ts";
import { listen, type QmpAddress, type QmpListener } from "../qmp/socket_transport.ts";
import type { DaemonConfig, ListenAddress, WorkingSetOption } from "./args.ts";
import { GraphBuilder } from "./graph_builder.ts";
import { registerDaemonBlockdevCommands } from "./blockdev_admin.ts";

/** A refused start-up: the message names the option at fault. */
export class DaemonError extends QedstreamError {}

/** Options of {@linkcode Daemon.start}. */
export interface DaemonOptions {
  /** The clock for jobs, rate limits and event timestamps. Default {@linkcode systemClock}. */
  clock?: Clock;
  /** Where start-up and shutdown notes go (TCP listeners, working sets written). Default: nowhere. */
  log?: (line: string) => void;
  /** Reads a working-set file. Default `Deno.readFile`. */
  readFile?: (path: string) => Promise<Uint8Array>;
  /** Writes a recorded working-set file. Default `Deno.writeFile`. */
  writeFile?: (path: string, data: Uint8Array) => Promise<void>;
}

/** A `--record-working-set` in progress. */
interface Recording {
  option: WorkingSetOption;
  recorder: WorkingSetRecorder;
  /** The backing chain's size and fingerprint, taken at start-up: a stream may drop the chain before shutdown. */
  templateSize: number;
  fingerprint: Uint8Array;
  detach: () => void;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

function qmpAddress(address: ListenAddress): QmpAddress {
  return address.type === "unix" ? { path: address.path } : {
    hostname: address.host,
    port: address.port,
  };
}

function describe(address: ListenAddress): string {
  return address.type === "unix" ? `unix:${address.path}` : `tcp:${address.host}:${address.port}`;
}

/**
 * A running daemon. {@linkcode Daemon.closed} resolves once it has shut down,
 * after `quit`, {@linkcode Daemon.close} or a failure.
 *
 * @example
 * ```ts ignore
 * const daemon = await Daemon.start(parseDaemonArgs(Deno.args));
 * Deno.addSignalListener("SIGINT", () => daemon.close());
 * await daemon.closed;
 * ```
 */
export class Daemon {
  readonly graph: BlockGraph;
  readonly jobs: JobRegistry;
  readonly qmp: QmpServer;
  readonly #builder: GraphBuilder;
  readonly #listeners: QmpListener[] = [];
  #nbd: NbdServer | undefined;
  /** `--working-set`: the ranges a stream of the node copies first unless its command names others. */
  readonly #workingSets = new Map<BlockNode, readonly ByteRange[]>();
  readonly #recordings: Recording[] = [];
  readonly #shutdownErrors: Error[] = [];
  #log: (line: string) => void = () => {};
  #writeFile: (path: string, data: Uint8Array) => Promise<void> = (path, data) =>
    Deno.writeFile(path, data);
  #closing: Promise<void> | undefined;
  #resolveClosed!: () => void;
  /** Resolves when the daemon has shut down. */
  readonly closed: Promise<void>;

  private constructor(clock: Clock) {
    this.graph = new BlockGraph();
    this.jobs = new JobRegistry({ clock });
    this.#builder = new GraphBuilder(this.graph, { jobs: this.jobs });
    this.qmp = new QmpServer({ clock, onQuit: () => void this.close() });
    registerBlockCommands(this.qmp, { graph: this.graph, jobs: this.jobs, clock });
    // Downstream extensions (working sets, manifests, guest first), named by qemu's convention.
    registerQedstreamExtensions(this.qmp, { graph: this.graph, jobs: this.jobs, clock });
    registerDaemonBlockdevCommands(this.qmp, {
      graph: this.graph,
      jobs: this.jobs,
      builder: this.#builder,
    });
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
  }

  /** What went wrong while shutting down (a recorded working set that could not be written). */
  get shutdownErrors(): readonly Error[] {
    return this.#shutdownErrors;
  }

  /** The addresses the QMP monitors listen on (real ports when 0 was asked). */
  get monitors(): QmpAddress[] {
    return this.#listeners.map((l) => l.address);
  }

  /**
   * Builds the nodes, then starts the monitors and exports, in command-line
   * order as qemu-storage-daemon does. On any failure everything already
   * started is shut down and the error names the option at fault.
   */
  static async start(config: DaemonConfig, options: DaemonOptions = {}): Promise<Daemon> {
    const daemon = new Daemon(options.clock ?? systemClock);
    const log = options.log ?? (() => {});
    daemon.#log = log;
    if (options.writeFile) daemon.#writeFile = options.writeFile;
    try {
      for (const blockdev of config.blockdevs) await daemon.#builder.add(blockdev);
      const readFile = options.readFile ?? ((path: string) => Deno.readFile(path));
      for (const option of config.workingSets) await daemon.#loadWorkingSet(option, readFile);
      if (config.workingSets.length > 0) daemon.#defaultWorkingSets();
      for (const option of config.recordWorkingSets) await daemon.#startRecording(option);
      for (const monitor of config.monitors) {
        daemon.#checkRemote(monitor.address, config.allowRemote, "QMP monitor");
        daemon.#listeners.push(await listen(daemon.qmp, qmpAddress(monitor.address)));
        if (monitor.address.type === "inet") {
          const bound = daemon.#listeners.at(-1)!.address as { hostname: string; port: number };
          log(`QMP monitor '${monitor.id}' listening on tcp:${bound.hostname}:${bound.port}`);
        }
      }
      if (config.nbdServer) {
        const { address, maxConnections } = config.nbdServer;
        daemon.#checkRemote(address, config.allowRemote, "NBD server");
        daemon.#nbd = new NbdServer({
          clock: options.clock ?? systemClock,
          ...(maxConnections ? { maxConnections } : {}),
        });
        for (const e of config.exports) {
          const node = daemon.graph.lookup(e.nodeName).node;
          const device = new BlockDevice(node);
          // Like qemu's export backend: blockdev-del must refuse the node while it is exported.
          daemon.graph.attachBackend(node);
          daemon.#nbd.addExport({
            name: e.name,
            readOnly: !e.writable,
            target: {
              get size() {
                return device.size;
              },
              read: (offset, buf) => device.read(offset, buf),
              write: (offset, data) => device.write(offset, data),
              writeZeroes: (offset, length) => device.writeZeroes(offset, length),
              flush: () => device.flush(),
              blockStatus: async (offset, length) => {
                const s = await device.blockStatus(offset, length);
                return { kind: s.kind, length: s.length };
              },
            },
          });
        }
        const nbdAddress: NbdAddress = address.type === "unix"
          ? { type: "unix", path: address.path }
          : { type: "inet", host: address.host, port: address.port };
        await daemon.#nbd.listen(nbdAddress);
        if (address.type === "inet") log(`NBD server listening on ${describe(address)}`);
      }
    } catch (e) {
      // A daemon that never ran recorded nothing: leave the files alone.
      for (const rec of daemon.#recordings.splice(0)) rec.detach();
      await daemon.close();
      throw e;
    }
    return daemon;
  }

  /** Reads a `--working-set` file and checks it belongs to the node's backing chain. */
  async #loadWorkingSet(
    option: WorkingSetOption,
    readFile: (path: string) => Promise<Uint8Array>,
  ): Promise<void> {
    try {
      const template = this.#backingOf(option.nodeName);
      const ws = decodeWorkingSet(await readFile(option.file));
      await checkWorkingSetTemplate(ws, template);
      this.#workingSets.set(this.graph.lookup(option.nodeName).node, ws.ranges);
    } catch (e) {
      throw optionError("working-set", option, e);
    }
  }

  /**
   * Makes the `--working-set` ranges the default of the streams of their
   * nodes: `block-stream` copies them first, and so does
   * `__com.qedstream_block-stream` unless it names a working set itself.
   * The handlers are replaced in place, so `query-commands` is unchanged.
   */
  #defaultWorkingSets(): void {
    const commands = this.qmp.commands;
    const rangesOf = (device: unknown): [BlockNode, readonly ByteRange[]] | undefined => {
      try {
        const { node } = this.graph.lookup(String(device));
        const ranges = this.#workingSets.get(node);
        return ranges ? [node, ranges] : undefined;
      } catch {
        return undefined; // the command itself reports the unknown device, in qemu's words
      }
    };
    const plain = commands.find("block-stream")!.handler;
    commands.handle("block-stream", async (args, context) => {
      const found = rangesOf(args.device);
      if (!found) return await plain(args, context);
      const disarm = armStreamExtras(found[0], { workingSet: found[1] });
      try {
        return await plain(args, context);
      } finally {
        disarm();
      }
    });
    const extendedName = `${QEDSTREAM_PREFIX}block-stream`;
    const extended = commands.find(extendedName)!.handler;
    commands.handle(extendedName, (args, context) => {
      const found = rangesOf(args.device);
      const named = args["working-set"] !== undefined || args["working-set-ranges"] !== undefined;
      return extended(
        found && !named ? { ...args, "working-set-ranges": found[1] } : args,
        context,
      );
    });
  }

  /** Starts a `--record-working-set`: guest reads on the node that miss it are noted until shutdown. */
  async #startRecording(option: WorkingSetOption): Promise<void> {
    try {
      const template = this.#backingOf(option.nodeName);
      const node = this.graph.lookup(option.nodeName).node;
      const recorder = new WorkingSetRecorder();
      this.#recordings.push({
        option,
        recorder,
        templateSize: template.size,
        fingerprint: await templateFingerprint(template),
        detach: attachWorkingSetRecorder(node, recorder),
      });
    } catch (e) {
      throw optionError("record-working-set", option, e);
    }
  }

  /** Writes every recorded working set; a failure is logged and kept, the others still written. */
  async #writeRecordings(): Promise<void> {
    for (const rec of this.#recordings.splice(0)) {
      rec.detach();
      rec.recorder.stop();
      const { nodeName, file } = rec.option;
      try {
        const ranges = rec.recorder.ranges.map((r) => ({ ...r }));
        await this.#writeFile(
          file,
          encodeWorkingSet({
            templateSize: rec.templateSize,
            fingerprint: rec.fingerprint,
            ranges,
          }),
        );
        this.#log(
          `working set of '${nodeName}' written to ${file}: ${ranges.length} ranges, ${rec.recorder.bytes} bytes`,
        );
      } catch (e) {
        const error = new DaemonError(
          "WORKING_SET_NOT_WRITTEN",
          `Could not write the working set of '${nodeName}' to ${file}: ${(e as Error).message}`,
          { cause: e },
        );
        this.#shutdownErrors.push(error);
        this.#log(error.message);
      }
    }
  }

  #backingOf(nodeName: string): BlockNode {
    const template = this.graph.lookup(nodeName).node.backing;
    if (!template) {
      throw new DaemonError("NO_BACKING", `node '${nodeName}' has no backing file`);
    }
    return template;
  }

  #checkRemote(address: ListenAddress, allowRemote: boolean, what: string): void {
    if (address.type !== "inet" || LOOPBACK.test(address.host)) return;
    if (!allowRemote) {
      throw new DaemonError(
        "REMOTE_NOT_ALLOWED",
        `${what} on ${
          describe(address)
        } would accept remote clients; listen on loopback or add --allow-remote`,
      );
    }
  }

  /**
   * Shuts down cleanly: running jobs are cancelled and waited for, monitors
   * and exports stop, and every image is flushed and closed (clearing QED's
   * need-check bit). Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const job of this.jobs.list()) {
        if (job.status === "concluded" || job.status === "null") continue;
        try {
          job.cancel({ force: true });
        } catch { /* already on its way out */ }
        await job.concluded;
      }
      for (const listener of this.#listeners) await listener.close();
      this.qmp.close();
      await this.#nbd?.close();
      // Before the images close: the guests are gone, so nothing more is read.
      await this.#writeRecordings();
      await this.#builder.close();
      this.#resolveClosed();
    })();
    return this.#closing;
  }
}

/** A failed working-set option as one line: the option, then what is wrong. */
function optionError(name: string, option: WorkingSetOption, e: unknown): DaemonError {
  const code = e instanceof QedstreamError ? e.code : "WORKING_SET_UNUSABLE";
  const what = e instanceof Error ? e.message : String(e);
  return new DaemonError(code, `--${name} ${option.nodeName}=${option.file}: ${what}`, {
    cause: e,
  });
}
