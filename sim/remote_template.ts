/**
 * A simulated remote template repository: one template served to many
 * machines over a shared link, with latency, queueing and faults.
 *
 * @module
 */

import type { Clock } from "../io/clock.ts";
import { QedstreamError } from "../io/error.ts";
import type { BlockNode, BlockStatus } from "../block/node.ts";
import { Random } from "./random.ts";
import { SharedLink } from "./shared_link.ts";

/** Anything the repository can serve: a size, positional reads, optionally allocation status. */
export interface TemplateSource {
  /** Virtual size in bytes. */
  readonly size: number;
  /** Fills `buf` with the bytes at `offset`. */
  read(offset: number, buf: Uint8Array): Promise<void>;
  /**
   * The allocation status of the run at `offset` (`"unallocated"` reads as
   * zeros). Without it every byte counts as data, as for a raw file.
   */
  blockStatus?(offset: number, length: number): Promise<BlockStatus>;
}

/** A time window `[start, end)` in the clock's ms. */
export interface TimeWindow {
  /** First ms of the window. */
  start: number;
  /** First ms after the window. */
  end: number;
}

/** A slow period: latency multiplied, bandwidth divided. */
export interface SlowPeriod extends TimeWindow {
  /** Multiplies the round-trip time of requests sent in the window. Default 1. */
  latencyFactor?: number;
  /** Divides the link's bandwidth during the window. Default 1. */
  bandwidthDivisor?: number;
}

/** Faults the repository injects. */
export interface RemoteFaults {
  /** Probability that a request fails with an I/O error (drawn from the seeded PRNG). Default 0. */
  errorRate?: number;
  /** Seed of the fault PRNG. Default 1. */
  seed?: number;
  /** Windows in which the repository is unreachable: requests fail after one round trip. */
  outages?: TimeWindow[];
  /** Windows of degraded service. */
  slowPeriods?: SlowPeriod[];
}

/** Options of {@linkcode RemoteTemplate}. */
export interface RemoteTemplateOptions {
  /** The clock every delay is taken on. */
  clock: Clock;
  /** Round-trip time in ms. Default 20. */
  rttMs?: number;
  /** Bandwidth of the repository's link in bytes per second, shared by all clients. Default 125,000,000 (1 Gbit/s). */
  bandwidth?: number;
  /** Requests the repository serves at once; more wait in a FIFO queue. Default 64. */
  maxInFlight?: number;
  /** Whether an allocation-status query costs a round trip (as an NBD block-status request does). Default true. */
  statusCostsRoundTrip?: boolean;
  /**
   * Each handle asks the repository about at least this many bytes per status
   * query; the reply lists every run in that window (as an NBD block-status
   * reply without the one-extent flag may), and the handle answers later
   * queries inside the window from that list, without a round trip. 0 turns
   * the cache off (one round trip per query). Default 256 MiB.
   */
  statusLookahead?: number;
  /**
   * Status replies each handle keeps, most recently used first (a client
   * that reads in several places, such as a stream and its guest, keeps a
   * window for each). Default 8.
   */
  statusWindows?: number;
  /** Injected faults. Default none. */
  faults?: RemoteFaults;
  /** The repository's name in node filenames. Default "template". */
  name?: string;
  /** Width in ms of the bins of the load timeline. Default 1000. */
  loadBinMs?: number;
  /**
   * Count how often each unit of this many bytes was fetched, per client
   * (to show that nothing is fetched twice). Default 0: not counted.
   */
  trackGranularity?: number;
}

/** Counters of one client (or of the whole repository). */
export interface RemoteCounters {
  /** Read requests (successful or not). */
  readRequests: number;
  /** Allocation-status requests. */
  statusRequests: number;
  /** Payload bytes delivered. */
  bytes: number;
  /** Requests that failed (injected errors and outages). */
  errors: number;
  /** Total ms requests waited for a free slot. */
  queuedMs: number;
}

/** The repository's load: totals, peaks and a timeline. */
export interface RemoteLoad extends RemoteCounters {
  /** The most requests in service at once. */
  peakInFlight: number;
  /** The most requests waiting for a slot at once. */
  peakQueued: number;
  /** Width of the bins of `bytesPerBin`. */
  binMs: number;
  /** Payload bytes delivered in each bin of the clock since creation. */
  bytesPerBin: number[];
}

/** Most runs one status reply carries. */
export const MAX_STATUS_RUNS = 1024;

/** One run of a status reply. */
export interface StatusRun {
  /** Byte offset of the run. */
  offset: number;
  /** Length of the run. */
  length: number;
  /** Its status at the repository. */
  kind: BlockStatus["kind"];
}

/** A failed request to the remote repository. */
export class RemoteError extends QedstreamError {}

function emptyCounters(): RemoteCounters {
  return { readRequests: 0, statusRequests: 0, bytes: 0, errors: 0, queuedMs: 0 };
}

/**
 * A template repository reached over a simulated network. Each machine gets
 * its own handle ({@linkcode RemoteTemplate.connect}), a read-only
 * {@linkcode BlockNode} that can be the backing of an overlay; all handles
 * share one link, one request queue and one fault generator.
 *
 * A read of `n` bytes costs half a round trip to reach the repository, a
 * wait for a free slot, the transfer of `n` bytes, and half a round trip for
 * the last byte to arrive. Each handle is one connection: its replies go out
 * in order, one after the other (as on one TCP stream), while the
 * connections of different machines share the link's bandwidth fairly.
 *
 * @example
 * ```ts
 * import { RemoteTemplate } from "./remote_template.ts";
 * import { SparseTemplate } from "./sparse_template.ts";
 * import { VirtualClock } from "./virtual_clock.ts";
 * const clock = new VirtualClock();
 * const repo = new RemoteTemplate(new SparseTemplate({ size: 1 << 26 }), { clock, rttMs: 20 });
 * const node = repo.connect("vm1");
 * await clock.run(() => node.read(0, new Uint8Array(65536)));
 * console.log(clock.now() > 20); // true
 * ```
 */
export class RemoteTemplate {
  /** What is served. */
  readonly source: TemplateSource;
  /** The repository's name. */
  readonly name: string;
  #clock: Clock;
  #rttMs: number;
  #maxInFlight: number;
  #statusCostsRoundTrip: boolean;
  #errorRate: number;
  #outages: TimeWindow[];
  #slow: SlowPeriod[];
  #random: Random;
  #link: SharedLink;
  #origin: number;
  #inFlight = 0;
  #queue: (() => void)[] = [];
  #total = emptyCounters();
  #peakInFlight = 0;
  #peakQueued = 0;
  #binMs: number;
  #bins: number[] = [];
  #granularity: number;
  #lookahead: number;
  #windows: number;
  #clients = new Map<string, RemoteNode>();

  /** Makes a repository serving `source`. */
  constructor(source: TemplateSource, options: RemoteTemplateOptions) {
    this.source = source;
    this.name = options.name ?? "template";
    this.#clock = options.clock;
    this.#rttMs = options.rttMs ?? 20;
    this.#maxInFlight = Math.max(1, options.maxInFlight ?? 64);
    this.#statusCostsRoundTrip = options.statusCostsRoundTrip ?? true;
    const faults = options.faults ?? {};
    this.#errorRate = faults.errorRate ?? 0;
    this.#outages = faults.outages ?? [];
    this.#slow = faults.slowPeriods ?? [];
    this.#random = new Random(faults.seed ?? 1).fork("remote-faults");
    this.#origin = this.#clock.now();
    this.#binMs = options.loadBinMs ?? 1000;
    this.#granularity = options.trackGranularity ?? 0;
    this.#lookahead = options.statusLookahead ?? 256 * 1024 * 1024;
    this.#windows = Math.max(1, options.statusWindows ?? 8);
    this.#link = new SharedLink({
      clock: this.#clock,
      bandwidth: options.bandwidth ?? 125_000_000,
      factorAt: (now) => this.#bandwidthFactorAt(now),
    });
  }

  /** Replaces the injected faults from now on (the fault PRNG keeps its sequence). */
  setFaults(faults: RemoteFaults): void {
    this.#errorRate = faults.errorRate ?? 0;
    this.#outages = faults.outages ?? [];
    this.#slow = faults.slowPeriods ?? [];
  }

  /** A new handle for the machine `client` (names must be unique). */
  connect(client: string): RemoteNode {
    if (this.#clients.has(client)) {
      throw new RemoteError("REMOTE_DUPLICATE_CLIENT", `client '${client}' is already connected`);
    }
    const node = new RemoteNode(this, client, this.#granularity, this.#lookahead, this.#windows);
    this.#clients.set(client, node);
    return node;
  }

  /** The handles, by client name. */
  get clients(): ReadonlyMap<string, RemoteNode> {
    return this.#clients;
  }

  /** Totals, peaks and the load timeline of the whole repository. */
  get load(): RemoteLoad {
    return {
      ...this.#total,
      peakInFlight: this.#peakInFlight,
      peakQueued: this.#peakQueued,
      binMs: this.#binMs,
      bytesPerBin: [...this.#bins],
    };
  }

  /** @internal Serves a read for `node`. */
  async serveRead(node: RemoteNode, offset: number, buf: Uint8Array): Promise<void> {
    const own = node.countersMutable;
    own.readRequests++;
    this.#total.readRequests++;
    await this.#travel(this.#clock.now());
    try {
      await this.#acquire(own);
      try {
        this.#maybeFail(node, `read of ${buf.length} bytes at ${offset}`);
        await this.source.read(offset, buf);
        await node.sendInOrder(() => this.#link.transfer(buf.length));
      } finally {
        this.#release();
      }
    } catch (error) {
      own.errors++;
      this.#total.errors++;
      await this.#travel(this.#clock.now());
      throw error;
    }
    await this.#travel(this.#clock.now());
    own.bytes += buf.length;
    this.#total.bytes += buf.length;
    const bin = Math.floor((this.#clock.now() - this.#origin) / this.#binMs);
    while (this.#bins.length <= bin) this.#bins.push(0);
    this.#bins[bin]! += buf.length;
    node.noteFetched(offset, buf.length);
  }

  /**
   * @internal Serves an allocation-status query for `node`: the runs
   * covering `[offset, offset + length)` (at most {@linkcode MAX_STATUS_RUNS},
   * at least one), in one reply.
   */
  async serveStatus(node: RemoteNode, offset: number, length: number): Promise<StatusRun[]> {
    const status = this.#runs(offset, length);
    if (!this.#statusCostsRoundTrip) return await status;
    const own = node.countersMutable;
    own.statusRequests++;
    this.#total.statusRequests++;
    await this.#travel(this.#clock.now());
    try {
      await this.#acquire(own);
      try {
        this.#maybeFail(node, `status query at ${offset}`);
      } finally {
        this.#release();
      }
    } catch (error) {
      own.errors++;
      this.#total.errors++;
      await this.#travel(this.#clock.now());
      throw error;
    }
    await this.#travel(this.#clock.now());
    return await status;
  }

  async #runs(offset: number, length: number): Promise<StatusRun[]> {
    const end = offset + length;
    const runs: StatusRun[] = [];
    for (let at = offset; at < end && runs.length < MAX_STATUS_RUNS;) {
      const st = this.source.blockStatus
        ? await this.source.blockStatus(at, end - at)
        : { kind: "data" as const, length: end - at };
      const n = Math.max(1, Math.min(st.length, end - at));
      runs.push({ offset: at, length: n, kind: st.kind });
      at += n;
    }
    return runs;
  }

  /** Half a round trip, stretched by a slow period in force at `sentAt`. */
  #travel(sentAt: number): Promise<void> {
    let factor = 1;
    for (const w of this.#slow) {
      if (sentAt >= w.start && sentAt < w.end) factor = Math.max(factor, w.latencyFactor ?? 1);
    }
    return this.#clock.sleep((this.#rttMs * factor) / 2);
  }

  #maybeFail(node: RemoteNode, what: string): void {
    const now = this.#clock.now();
    if (this.#outages.some((w) => now >= w.start && now < w.end)) {
      throw new RemoteError(
        "REMOTE_UNAVAILABLE",
        `remote template '${this.name}' unreachable (outage) for ${node.client}: ${what}`,
      );
    }
    if (this.#random.chance(this.#errorRate)) {
      throw new RemoteError(
        "REMOTE_IO_ERROR",
        `remote template '${this.name}': injected I/O error for ${node.client}: ${what}`,
      );
    }
  }

  async #acquire(own: RemoteCounters): Promise<void> {
    if (this.#inFlight < this.#maxInFlight && this.#queue.length === 0) {
      this.#inFlight++;
    } else {
      const since = this.#clock.now();
      await new Promise<void>((resolve) => {
        this.#queue.push(resolve);
        this.#peakQueued = Math.max(this.#peakQueued, this.#queue.length);
      });
      const waited = this.#clock.now() - since;
      own.queuedMs += waited;
      this.#total.queuedMs += waited;
    }
    this.#peakInFlight = Math.max(this.#peakInFlight, this.#inFlight);
  }

  #release(): void {
    const next = this.#queue.shift();
    // The slot passes straight to the next waiter, so the count stays.
    if (next) next();
    else this.#inFlight--;
  }

  #bandwidthFactorAt(now: number): { factor: number; until: number } {
    let divisor = 1;
    let until = Infinity;
    for (const w of this.#slow) {
      if (now >= w.start && now < w.end) {
        divisor = Math.max(divisor, w.bandwidthDivisor ?? 1);
        until = Math.min(until, w.end);
      } else if (w.start > now) {
        until = Math.min(until, w.start);
      }
    }
    return { factor: 1 / divisor, until };
  }
}

/**
 * One machine's handle onto a {@linkcode RemoteTemplate}: a read-only
 * {@linkcode BlockNode} (driver `"sim-remote"`) with its own counters.
 */
export class RemoteNode implements BlockNode {
  /** The machine this handle belongs to. */
  readonly client: string;
  readonly nodeName: string;
  readonly driver = "sim-remote";
  readonly filename: string;
  readonly size: number;
  readonly readOnly = true;
  readonly backing = null;
  #repo: RemoteTemplate;
  #counters = emptyCounters();
  #closed = false;
  #granularity: number;
  #fetched = new Map<number, number>();
  #lookahead: number;
  #maxWindows: number;
  #windows: StatusRun[][] = [];
  #wire: Promise<void> = Promise.resolve();

  /** @internal Made by {@linkcode RemoteTemplate.connect}. */
  constructor(
    repo: RemoteTemplate,
    client: string,
    granularity: number,
    lookahead: number,
    windows = 8,
  ) {
    this.#maxWindows = windows;
    this.#repo = repo;
    this.client = client;
    this.nodeName = `remote-${client}`;
    this.filename = `sim-remote://${repo.name}?client=${client}`;
    this.size = repo.source.size;
    this.#granularity = granularity;
    this.#lookahead = lookahead;
  }

  /** This client's counters (a copy). */
  get counters(): RemoteCounters {
    return { ...this.#counters };
  }

  /** @internal The live counters, for the repository to update. */
  get countersMutable(): RemoteCounters {
    return this.#counters;
  }

  /**
   * How many times each tracked unit was fetched (unit index → count), when
   * the repository tracks fetches.
   */
  get fetchCounts(): ReadonlyMap<number, number> {
    return this.#fetched;
  }

  /** How many tracked units were fetched more than once. */
  get refetchedUnits(): number {
    let n = 0;
    for (const count of this.#fetched.values()) if (count > 1) n++;
    return n;
  }

  /** @internal Records a delivered range. */
  noteFetched(offset: number, length: number): void {
    const g = this.#granularity;
    if (g <= 0 || length <= 0) return;
    const last = Math.floor((offset + length - 1) / g);
    for (let u = Math.floor(offset / g); u <= last; u++) {
      this.#fetched.set(u, (this.#fetched.get(u) ?? 0) + 1);
    }
  }

  read(offset: number, buf: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closedError());
    if (offset < 0 || offset + buf.length > this.size) {
      return Promise.reject(
        new RemoteError(
          "REMOTE_OUT_OF_RANGE",
          `read of ${buf.length} bytes at ${offset} is outside the template (${this.size} bytes)`,
        ),
      );
    }
    if (buf.length === 0) return Promise.resolve();
    return this.#repo.serveRead(this, offset, buf);
  }

  write(_offset: number, _data: Uint8Array): Promise<void> {
    return Promise.reject(this.#readOnlyError());
  }

  writeZeroes(_offset: number, _length: number): Promise<void> {
    return Promise.reject(this.#readOnlyError());
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  async blockStatus(offset: number, length: number): Promise<BlockStatus> {
    if (this.#closed) throw this.#closedError();
    const len = Math.min(length, this.size - offset);
    if (len <= 0) return { kind: "unallocated", length: Math.max(1, length) };
    let run = this.#lookup(offset);
    if (!run) {
      const ask = Math.min(this.size - offset, Math.max(len, this.#lookahead));
      const runs = await this.#repo.serveStatus(this, offset, ask);
      if (this.#lookahead > 0) {
        this.#windows.unshift(runs);
        if (this.#windows.length > this.#maxWindows) this.#windows.pop();
      }
      run = runs[0]!;
    }
    return { kind: run.kind, length: Math.min(len, run.offset + run.length - offset) };
  }

  /** @internal Sends a reply's payload after every earlier reply to this client (one connection, in order). */
  async sendInOrder(send: () => Promise<void>): Promise<void> {
    const before = this.#wire;
    let done!: () => void;
    this.#wire = new Promise((resolve) => done = resolve);
    try {
      await before;
      await send();
    } finally {
      done();
    }
  }

  #lookup(offset: number): StatusRun | undefined {
    for (const [i, runs] of this.#windows.entries()) {
      const run = findRun(runs, offset);
      if (!run) continue;
      if (i > 0) this.#windows.unshift(...this.#windows.splice(i, 1));
      return run;
    }
    return undefined;
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  #readOnlyError(): RemoteError {
    return new RemoteError("REMOTE_READ_ONLY", `remote template '${this.#repo.name}' is read-only`);
  }

  #closedError(): RemoteError {
    return new RemoteError(
      "REMOTE_CLOSED",
      `handle of ${this.client} on '${this.#repo.name}' is closed`,
    );
  }
}

/** The run of a status reply (sorted runs) that contains `offset`, if any. */
function findRun(runs: readonly StatusRun[], offset: number): StatusRun | undefined {
  let lo = 0;
  let hi = runs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const r = runs[mid]!;
    if (r.offset + r.length <= offset) lo = mid + 1;
    else hi = mid;
  }
  const r = runs[lo];
  return r && r.offset <= offset ? r : undefined;
}
