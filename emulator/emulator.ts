/**
 * An emulated machine for other projects' tests, started in one call: the
 * same block layer, job core and QMP command set as `qedstream serve`
 * (it runs a {@linkcode Daemon}), with drives built from in-memory,
 * simulated, file or NBD templates, monitors on Unix sockets, loopback TCP
 * or an in-process transport, an optional guest workload, a system or
 * virtual clock, and faults that can be injected and lifted at any time.
 *
 * @module
 */

import type { JobRegistry } from "../block/job_registry.ts";
import type { BlockGraph } from "../block/graph.ts";
import type { DaemonConfig, MonitorConfig } from "../daemon/args.ts";
import { Daemon } from "../daemon/daemon.ts";
import { type Clock, systemClock } from "../io/clock.ts";
import { QmpClient, type QmpClientOptions } from "../qmp/client.ts";
import type { QmpServer } from "../qmp/server.ts";
import type { QmpAddress } from "../qmp/socket_transport.ts";
import { type ByteTransport, memoryTransportPair } from "../qmp/transport.ts";
import { Guest, type GuestOptions, type GuestReport } from "../sim/guest.ts";
import { VirtualClock } from "../sim/virtual_clock.ts";
import { type DriveOptions, type EmulatorDrive, openDrive, type OpenedDrive } from "./drive.ts";
import { EmulatorError } from "./error.ts";
import type { FaultPlan } from "./fault_plan.ts";

/** A QMP monitor listening on a socket (the in-process monitor needs none). */
export type MonitorSpec =
  | {
    /** A Unix socket, created readable and writable by its owner only. */
    type: "unix";
    /** The socket's path. */
    path: string;
  }
  | {
    /** A TCP port on loopback. */
    type: "tcp";
    /** The address. Default `127.0.0.1`; only loopback addresses are accepted. */
    host?: string;
    /** The port; 0 picks a free one (see {@linkcode Emulator.monitors}). Default 0. */
    port?: number;
  };

/** A guest workload on one drive (see sim's {@linkcode Guest}). */
export interface GuestSpec
  extends Omit<GuestOptions, "clock" | "size" | "reference" | "signal" | "onIo"> {
  /** The drive the guest runs on. */
  drive: string;
}

/** Options of {@linkcode startEmulator}. */
export interface EmulatorOptions {
  /** The drives, each a QED overlay over a template. Default none. */
  drives?: readonly DriveOptions[];
  /** Socket monitors; {@linkcode Emulator.connect} works without any. Default none. */
  monitors?: readonly MonitorSpec[];
  /** A guest workload, started at once (on a virtual clock it runs as time advances). Default none. */
  guest?: GuestSpec;
  /**
   * The clock for jobs, rate limits, the simulated network, the guest and
   * event timestamps: `"system"`, `"virtual"` (a new {@linkcode VirtualClock}
   * at 0, moved by {@linkcode Emulator.advance} and {@linkcode Emulator.run}),
   * or a clock of your own. Default `"system"`.
   */
  clock?: "system" | "virtual" | Clock;
  /** Where start-up notes go (a TCP monitor's port). Default: nowhere. */
  log?: (line: string) => void;
}

/** Options of {@linkcode Emulator.connect}. */
export interface ConnectOptions extends QmpClientOptions {
  /**
   * Connect through the socket monitor with this index in
   * {@linkcode EmulatorOptions.monitors}. Default: the in-process monitor.
   */
  monitor?: number;
}

/** Options of {@linkcode Emulator.run}. */
export interface EmulatorRunOptions {
  /** Fail if virtual time would pass this many ms after the start of the run. Default: no limit. */
  limit?: number;
  /**
   * With socket monitors or NBD templates (real I/O): how long, in real ms,
   * the run waits for real I/O while no virtual timer is set before it
   * fails as a deadlock. Default 30000.
   */
  idleMs?: number;
}

/** The guest of an emulator. */
export interface EmulatorGuest {
  /** The workload (its hot files, its write model, what a read must return). */
  readonly guest: Guest;
  /** The drive it runs on. */
  readonly drive: EmulatorDrive;
  /** Resolves when the boot phase has completed. */
  readonly booted: Promise<void>;
  /** Resolves with the report when the workload ends; rejects on a wrong byte or an I/O that kept failing. */
  readonly report: Promise<GuestReport>;
}

/** The moment every task waits (everything in memory has settled). */
function settle(clock: VirtualClock): Promise<void> {
  return clock.advance(0);
}

/**
 * A running emulator: see {@linkcode startEmulator}. Close it with
 * {@linkcode Emulator.close} or `await using`.
 */
export class Emulator implements AsyncDisposable {
  /** The clock everything runs on. */
  readonly clock: Clock;
  /** The drives, by name. */
  readonly drives: ReadonlyMap<string, EmulatorDrive>;
  /** The guest, when one was asked for. */
  readonly guest: EmulatorGuest | undefined;
  /** Resolves once the emulator has shut down (after {@linkcode Emulator.close} or QMP `quit`). */
  readonly closed: Promise<void>;
  readonly #daemon: Daemon;
  readonly #opened: OpenedDrive[];
  readonly #realIo: boolean;
  readonly #clients = new Set<QmpClient>();
  readonly #sessions: Promise<void>[] = [];
  readonly #stopGuest = new AbortController();
  #closing: Promise<void> | undefined;
  #resolveClosed!: () => void;

  /** @internal Made by {@linkcode startEmulator}. */
  constructor(parts: {
    clock: Clock;
    daemon: Daemon;
    opened: OpenedDrive[];
    realIo: boolean;
    guest?: GuestSpec;
  }) {
    this.clock = parts.clock;
    this.#daemon = parts.daemon;
    this.#opened = parts.opened;
    this.#realIo = parts.realIo;
    this.drives = new Map(parts.opened.map((o) => [o.drive.name, o.drive]));
    this.closed = new Promise((resolve) => this.#resolveClosed = resolve);
    this.guest = parts.guest ? this.#startGuest(parts.guest) : undefined;
    // QMP `quit` shuts the daemon down; the drives and the guest follow.
    void this.#daemon.closed.then(() => this.close()).catch(() => {});
  }

  #startGuest(spec: GuestSpec): EmulatorGuest {
    const { drive: name, ...options } = spec;
    const drive = this.drive(name);
    const guest = new Guest({
      ...options,
      clock: this.clock,
      size: drive.size,
      reference: (offset, buf) => drive.readTemplate(offset, buf.length).then((b) => buf.set(b)),
      signal: this.#stopGuest.signal,
    });
    const report = guest.run(drive.device);
    // Handled here so that a failing guest nobody asks about is no unhandled rejection.
    report.catch(() => {});
    return { guest, drive, booted: guest.booted, report };
  }

  /** The block graph (every node, by node name). */
  get graph(): BlockGraph {
    return this.#daemon.graph;
  }

  /** The job registry (`query-jobs` reads it). */
  get jobs(): JobRegistry {
    return this.#daemon.jobs;
  }

  /** The QMP server behind every monitor. */
  get qmp(): QmpServer {
    return this.#daemon.qmp;
  }

  /** The socket monitors' addresses (real ports when 0 was asked), in the order given. */
  get monitors(): QmpAddress[] {
    return this.#daemon.monitors;
  }

  /** The drive named `name`; throws {@linkcode EmulatorError} `EMULATOR_NO_DRIVE` if there is none. */
  drive(name: string): EmulatorDrive {
    const drive = this.drives.get(name);
    if (!drive) throw new EmulatorError("EMULATOR_NO_DRIVE", `No drive named '${name}'`);
    return drive;
  }

  /**
   * A QMP client, negotiated and ready: over the in-process monitor (no
   * socket), or over a socket monitor when `options.monitor` is given. Its
   * timeouts run on the emulator's clock unless `options.clock` says
   * otherwise. The emulator closes it when it closes.
   */
  async connect(options: ConnectOptions = {}): Promise<QmpClient> {
    const { monitor, ...clientOptions } = options;
    let target: QmpAddress | { transport: ByteTransport };
    if (monitor === undefined) {
      const [mine, theirs] = memoryTransportPair();
      this.#sessions.push(this.#daemon.qmp.serve(theirs).catch(() => {}));
      target = { transport: mine };
    } else {
      const address = this.monitors[monitor];
      if (!address) {
        throw new EmulatorError("EMULATOR_NO_MONITOR", `No socket monitor with index ${monitor}`);
      }
      target = address;
    }
    const client = await QmpClient.connect(target, { clock: this.clock, ...clientOptions });
    this.#clients.add(client);
    return client;
  }

  /** Injects faults on the template of drive `name` (replacing its plan). */
  injectFaults(name: string, plan: FaultPlan): void {
    this.drive(name).injectFaults(plan);
  }

  /** Lifts every fault on the template of drive `name`. */
  liftFaults(name: string): void {
    this.drive(name).liftFaults();
  }

  #virtual(what: string): VirtualClock {
    if (this.clock instanceof VirtualClock) return this.clock;
    throw new EmulatorError(
      "EMULATOR_NOT_VIRTUAL",
      `${what} needs a virtual clock; start the emulator with clock: "virtual"`,
    );
  }

  /**
   * Moves virtual time forward by `ms`, firing every timer due on the way in
   * order (jobs, the simulated network, the guest). Throws
   * {@linkcode EmulatorError} `EMULATOR_NOT_VIRTUAL` on a system clock.
   */
  async advance(ms: number): Promise<void> {
    await this.#virtual("advance()").advance(ms);
  }

  /**
   * Runs `main` to completion. On a virtual clock, time jumps to the next
   * deadline whenever every task waits, so a stream over a slow simulated
   * network finishes in milliseconds; with only the in-process monitor and
   * in-memory or file drives the run is exact and repeats. With socket
   * monitors or NBD templates, real I/O is given time to complete (between
   * virtual timers, and up to `options.idleMs` when none is set). On a
   * system clock it just awaits `main`.
   */
  async run<T>(main: () => Promise<T>, options: EmulatorRunOptions = {}): Promise<T> {
    if (!(this.clock instanceof VirtualClock)) return await main();
    const clock = this.clock;
    if (!this.#realIo) {
      return await clock.run(main, options.limit === undefined ? {} : { limit: options.limit });
    }
    const start = clock.now();
    const idleMs = options.idleMs ?? 30000;
    let outcome: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
    main().then(
      (value) => outcome = { ok: true, value },
      (error) => outcome = { ok: false, error },
    );
    let idle = 0;
    for (;;) {
      await settle(clock);
      // Real I/O (a socket, an NBD server) completes on the event loop: give it a turn.
      await systemClock.sleep(0);
      if (outcome) {
        if (outcome.ok) return outcome.value;
        throw outcome.error;
      }
      const next = clock.nextDeadline;
      if (next === undefined) {
        if (idle >= idleMs) {
          throw new EmulatorError(
            "EMULATOR_DEADLOCK",
            `Virtual clock at ${clock.now()} ms: nothing progressed for ${idleMs} real ms`,
          );
        }
        await systemClock.sleep(1);
        idle += 1;
        continue;
      }
      idle = 0;
      if (options.limit !== undefined && next - start > options.limit) {
        throw new EmulatorError(
          "EMULATOR_LIMIT",
          `Virtual clock passed its limit of ${options.limit} ms`,
        );
      }
      await clock.advance(Math.max(0, next - clock.now()));
    }
  }

  /**
   * Shuts everything down, in order: the guest stops, the clients close,
   * running jobs are cancelled and waited for, the monitors stop, and every
   * image is flushed and closed (a memory overlay stays readable through
   * {@linkcode EmulatorDrive.imageBytes}). On a virtual clock, time moves as
   * needed for the jobs and the guest to stop. Safe to call more than once.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        this.#stopGuest.abort();
        await this.run(async () => {
          await this.guest?.report.catch(() => {});
          for (const client of this.#clients) await client.close().catch(() => {});
          await this.#daemon.close();
          await Promise.all(this.#sessions);
        });
      } finally {
        for (const { drive, close } of this.#opened.toReversed()) {
          this.graph.removeNode(drive.node);
          this.graph.removeNode(drive.backing);
          await close();
        }
        this.#resolveClosed();
      }
    })();
    return this.#closing;
  }

  /** {@linkcode Emulator.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function monitorConfig(spec: MonitorSpec, index: number): MonitorConfig {
  if (spec.type === "unix") {
    return { id: `monitor${index}`, address: { type: "unix", path: spec.path }, pretty: false };
  }
  return {
    id: `monitor${index}`,
    address: { type: "inet", host: spec.host ?? "127.0.0.1", port: spec.port ?? 0 },
    pretty: false,
  };
}

/**
 * Starts an emulated machine in one call and returns its handle: connect a
 * QMP client, run or advance time, inject or lift faults, read the images,
 * and close everything (also through `await using`). The QMP command set is
 * `qedstream serve`'s: `block-stream`, the job verbs, `query-block-jobs`,
 * `query-named-block-nodes`, the seed era's one-step `block_stream`, ...
 *
 * @example Stream an in-memory drive to independence over the in-process monitor
 * ```ts
 * import { startEmulator } from "./emulator.ts";
 * await using emu = await startEmulator({
 *   drives: [{ name: "vm1", template: { type: "memory", bytes: new Uint8Array(1 << 20).fill(7) } }],
 * });
 * const qmp = await emu.connect();
 * await qmp.execute("block-stream", { "job-id": "s1", device: "vm1" });
 * await qmp.waitEvent("BLOCK_JOB_COMPLETED");
 * console.log(emu.drive("vm1").independent); // true
 * ```
 *
 * @example Minutes of a slow remote template in milliseconds, with a fault
 * ```ts
 * import { startEmulator } from "./emulator.ts";
 * await using emu = await startEmulator({
 *   clock: "virtual",
 *   drives: [{
 *     name: "vm1",
 *     template: { type: "remote", template: { size: 8 << 20 }, network: { rttMs: 50 } },
 *   }],
 * });
 * const qmp = await emu.connect();
 * emu.injectFaults("vm1", { outage: true });
 * await qmp.execute("block-stream", { "job-id": "s1", device: "vm1", "on-error": "stop" });
 * const error = await emu.run(() => qmp.waitEvent("BLOCK_JOB_ERROR"));
 * emu.liftFaults("vm1");
 * await qmp.execute("block-job-resume", { device: "s1" });
 * await emu.run(() => qmp.waitEvent("BLOCK_JOB_COMPLETED"));
 * console.log(error.data.action, emu.clock.now() > 50); // stop true
 * ```
 */
export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const clock = options.clock === "virtual"
    ? new VirtualClock()
    : options.clock === "system" || options.clock === undefined
    ? systemClock
    : options.clock;
  const names = new Set<string>();
  for (const d of options.drives ?? []) {
    if (names.has(d.name)) {
      throw new EmulatorError("EMULATOR_DUPLICATE_DRIVE", `Two drives are named '${d.name}'`);
    }
    names.add(d.name);
  }
  if (options.guest && !names.has(options.guest.drive)) {
    throw new EmulatorError(
      "EMULATOR_NO_DRIVE",
      `The guest runs on drive '${options.guest.drive}', which is not defined`,
    );
  }
  const opened: OpenedDrive[] = [];
  let daemon: Daemon | undefined;
  try {
    for (const d of options.drives ?? []) opened.push(await openDrive(d, clock));
    const config: DaemonConfig = {
      blockdevs: [],
      monitors: (options.monitors ?? []).map(monitorConfig),
      exports: [],
      workingSets: [],
      recordWorkingSets: [],
      allowRemote: false,
      help: false,
      version: false,
    };
    daemon = await Daemon.start(config, { clock, ...(options.log ? { log: options.log } : {}) });
    for (const { drive } of opened) {
      daemon.graph.addNode(drive.backing);
      daemon.graph.addNode(drive.node);
    }
  } catch (e) {
    await daemon?.close();
    for (const o of opened.toReversed()) await o.close();
    throw e;
  }
  const realIo = (options.monitors ?? []).length > 0 ||
    (options.drives ?? []).some((d) => d.template.type === "nbd");
  return new Emulator({
    clock,
    daemon,
    opened,
    realIo,
    ...(options.guest ? { guest: options.guest } : {}),
  });
}
