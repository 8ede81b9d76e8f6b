/**
 * The emulated machine behind `qedstream serve`: block nodes built from
 * `--blockdev`, QMP monitors, NBD exports, and a clean shutdown.
 *
 * @module
 */

import { BlockDevice } from "../block/device.ts";
import { BlockGraph } from "../block/graph.ts";
import { JobRegistry } from "../block/job_registry.ts";
import { type Clock, systemClock } from "../io/clock.ts";
import { QedstreamError } from "../io/error.ts";
import type { NbdAddress } from "../nbd/address.ts";
import { NbdServer } from "../nbd/server.ts";
import { registerBlockCommands } from "../qmp/block_commands.ts";
import { registerQedstreamExtensions } from "../qmp/qedstream_extensions.ts";
import { QmpServer } from "../qmp/server.ts";
import { listen, type QmpAddress, type QmpListener } from "../qmp/socket_transport.ts";
import type { DaemonConfig, ListenAddress } from "./args.ts";
import { GraphBuilder } from "./graph_builder.ts";
import { registerDaemonBlockdevCommands } from "./blockdev_admin.ts";

/** A refused start-up: the message names the option at fault. */
export class DaemonError extends QedstreamError {}

/** Options of {@linkcode Daemon.start}. */
export interface DaemonOptions {
  /** The clock for jobs, rate limits and event timestamps. Default {@linkcode systemClock}. */
  clock?: Clock;
  /** Where start-up notes go (TCP listeners, remote access). Default: nowhere. */
  log?: (line: string) => void;
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
  #closing: Promise<void> | undefined;
  #resolveClosed!: () => void;
  /** Resolves when the daemon has shut down. */
  readonly closed: Promise<void>;

  private constructor(clock: Clock) {
    this.graph = new BlockGraph();
    this.jobs = new JobRegistry({ clock });
    this.#builder = new GraphBuilder(this.graph);
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
    try {
      for (const blockdev of config.blockdevs) await daemon.#builder.add(blockdev);
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
      await daemon.close();
      throw e;
    }
    return daemon;
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
      await this.#builder.close();
      this.#resolveClosed();
    })();
    return this.#closing;
  }
}
