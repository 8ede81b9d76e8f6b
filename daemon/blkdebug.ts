/**
 * qemu's `blkdebug` driver with its option syntax, so that test scripts
 * written for qemu inject the same faults into qedstream: a `config=FILE`
 * of `[inject-error]` and `[set-state]` sections and the inline
 * `inject-error.N.*` / `set-state.N.*` options.
 *
 * The model is qemu 7.2's (`block/blkdebug.c`):
 *
 * - A node has a state, 1 at first. An *event* runs the rules of that event
 *   whose `state` is 0 (any) or the current one: `set-state` rules choose
 *   the next state (taken after all rules ran), `inject-error` rules become
 *   the *active* rules (the list is reset when an event activates any).
 * - Every request through the node is then checked against the active
 *   rules: the first whose `sector` (512-byte units; -1 = any) lies in the
 *   request and whose `iotype` matches fails it with `errno`; a `once` rule
 *   is removed when it fires. `immediately=off` only delays the error to a
 *   later turn of the event loop, as qemu does.
 * - Two downstream rule options, named by qemu's convention for them, make
 *   faults that qemu's blkdebug cannot: `__com.qedstream_sectors=N` widens
 *   the rule from its one `sector` to N sectors (a range), and
 *   `__com.qedstream_probability=P` (0 to 1) fails a matching request only
 *   with that probability, drawn from a PRNG seeded by the rule's index so a
 *   run repeats exactly.
 * - The events raised are those qemu raises for a `raw` format over the
 *   blkdebug node (its usual use): `read_aio` before every read,
 *   `write_aio` then `pwritev` before every write (`pwritev_zero` for
 *   write-zeroes) and `pwritev_done` after, `flush_to_os` and
 *   `flush_to_disk` before a flush. Every event name of qemu's enum is
 *   accepted; those no qedstream node raises (qcow2's `l2_load`, ...) never
 *   fire.
 *
 * @module
 */

import { BlockError } from "../block/error.ts";
import { Random } from "../sim/random.ts";
import { OptionError } from "./keyval.ts";

/** qemu 7.2's `BlkdebugEvent` values. */
export const BLKDEBUG_EVENTS = [
  "l1_update",
  "l1_grow_alloc_table",
  "l1_grow_write_table",
  "l1_grow_activate_table",
  "l2_load",
  "l2_update",
  "l2_update_compressed",
  "l2_alloc_cow_read",
  "l2_alloc_write",
  "read_aio",
  "read_backing_aio",
  "read_compressed",
  "write_aio",
  "write_compressed",
  "vmstate_load",
  "vmstate_save",
  "cow_read",
  "cow_write",
  "reftable_load",
  "reftable_grow",
  "reftable_update",
  "refblock_load",
  "refblock_update",
  "refblock_update_part",
  "refblock_alloc",
  "refblock_alloc_hookup",
  "refblock_alloc_write",
  "refblock_alloc_write_blocks",
  "refblock_alloc_write_table",
  "refblock_alloc_switch_table",
  "cluster_alloc",
  "cluster_alloc_bytes",
  "cluster_free",
  "flush_to_os",
  "flush_to_disk",
  "pwritev_rmw_head",
  "pwritev_rmw_after_head",
  "pwritev_rmw_tail",
  "pwritev_rmw_after_tail",
  "pwritev",
  "pwritev_zero",
  "pwritev_done",
  "empty_image_prepare",
  "l1_shrink_write_table",
  "l1_shrink_free_l2_clusters",
  "cor_write",
  "cluster_alloc_space",
  "none",
] as const;

/** A `BlkdebugEvent`. */
export type BlkdebugEvent = typeof BLKDEBUG_EVENTS[number];

/** qemu's `BlkdebugIOType`. */
export const BLKDEBUG_IO_TYPES = [
  "read",
  "write",
  "write-zeroes",
  "discard",
  "flush",
  "block-status",
] as const;

/** A `BlkdebugIOType`. */
export type BlkdebugIoType = typeof BLKDEBUG_IO_TYPES[number];

/** One `inject-error` rule. */
export interface InjectErrorRule {
  /** The event that activates the rule. */
  event: BlkdebugEvent;
  /** The state the rule applies in; 0 = any. Default 0. */
  state: number;
  /** The request types it fails; absent = every type but `block-status`. */
  iotype: BlkdebugIoType | undefined;
  /** The errno to fail with. Default 5 (EIO). */
  errno: number;
  /** The sector a request must cover, or -1 for any request. Default -1. */
  sector: number;
  /** Whether the rule fires once only. Default false. */
  once: boolean;
  /** Whether the error returns at once instead of after a turn of the event loop. Default false. */
  immediately: boolean;
  /** Sectors from `sector` the rule covers (`__com.qedstream_sectors`). Default 1. */
  sectors: number;
  /** The chance a matching request fails (`__com.qedstream_probability`). Default 1. */
  probability: number;
}

/** One `set-state` rule. */
export interface SetStateRule {
  /** The event that runs the rule. */
  event: BlkdebugEvent;
  /** The state the rule applies in; 0 = any. Default 0. */
  state: number;
  /** The state to move to. */
  newState: number;
}

const SECTORS_KEY = "__com.qedstream_sectors";
const PROBABILITY_KEY = "__com.qedstream_probability";
const INJECT_KEYS = [
  "event",
  "state",
  "iotype",
  "errno",
  "sector",
  "once",
  "immediately",
  SECTORS_KEY,
  PROBABILITY_KEY,
];
const SET_STATE_KEYS = ["event", "state", "new_state"];

function toInt(value: unknown, path: string): number {
  const n = typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) {
    throw new OptionError(
      "OPTION_BAD_TYPE",
      `Invalid parameter type for '${path}', expected: integer`,
    );
  }
  return n;
}

function toBool(value: unknown, path: string): boolean {
  if (value === true || value === "on") return true;
  if (value === false || value === "off") return false;
  throw new OptionError(
    "OPTION_BAD_TYPE",
    `Invalid parameter type for '${path}', expected: boolean`,
  );
}

function toEnum<T extends string>(
  values: readonly T[],
  value: unknown,
  name: string,
  path: string,
): T {
  if (typeof value !== "string") {
    throw new OptionError(
      "OPTION_BAD_TYPE",
      `Invalid parameter type for '${path}', expected: string`,
    );
  }
  if (!(values as readonly string[]).includes(value)) {
    throw new OptionError(
      "OPTION_BAD_VALUE",
      `Parameter '${name}' does not accept value '${value}'`,
    );
  }
  return value as T;
}

/** A list given as a keyval tree `{"0": {...}}` or a JSON array. */
function asList(value: unknown, name: string): Record<string, unknown>[] {
  if (value === undefined) return [];
  const list = Array.isArray(value)
    ? value
    : typeof value === "object" && value !== null
    ? Object.entries(value as Record<string, unknown>)
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([, v]) => v)
    : null;
  if (!list) {
    throw new OptionError(
      "OPTION_BAD_TYPE",
      `Invalid parameter type for '${name}', expected: array`,
    );
  }
  return list.map((entry, i) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new OptionError(
        "OPTION_BAD_TYPE",
        `Invalid parameter type for '${name}.${i}', expected: object`,
      );
    }
    return entry as Record<string, unknown>;
  });
}

function checkKeys(entry: Record<string, unknown>, keys: string[], base: string): void {
  for (const key of Object.keys(entry)) {
    if (!keys.includes(key)) {
      throw new OptionError("OPTION_UNEXPECTED", `Parameter '${base}.${key}' is unexpected`);
    }
  }
  if (entry.event === undefined) {
    throw new OptionError("OPTION_MISSING", `Parameter '${base}.event' is missing`);
  }
}

/**
 * Parses a blkdebug config file: `[inject-error]` and `[set-state]`
 * sections of `key = "value"` lines (qemu's config syntax; `#` starts a
 * comment). Unknown sections are errors, as in qemu.
 *
 * @example
 * ```ts
 * import { parseBlkdebugConfig } from "./blkdebug.ts";
 * const c = parseBlkdebugConfig('[inject-error]\nevent = "read_aio"\nerrno = "5"\n');
 * console.log(c.injectError); // [ { event: "read_aio", errno: "5" } ]
 * ```
 */
export function parseBlkdebugConfig(
  text: string,
): { injectError: Record<string, string>[]; setState: Record<string, string>[] } {
  const injectError: Record<string, string>[] = [];
  const setState: Record<string, string>[] = [];
  let current: Record<string, string> | undefined;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const section = line.match(/^\[([^\]]+)\]$/);
    if (section) {
      current = {};
      if (section[1] === "inject-error") injectError.push(current);
      else if (section[1] === "set-state") setState.push(current);
      else {
        throw new OptionError(
          "OPTION_BAD_CONFIG",
          `Could not read blkdebug config file: Invalid argument (line ${i + 1}: no group '${
            section[1]
          }')`,
        );
      }
      return;
    }
    const pair = line.match(/^([A-Za-z0-9_.-]+)\s*=\s*"([^"]*)"$/);
    if (!pair || !current) {
      throw new OptionError(
        "OPTION_BAD_CONFIG",
        `Could not read blkdebug config file: Invalid argument (line ${i + 1})`,
      );
    }
    current[pair[1]!] = pair[2]!;
  });
  return { injectError, setState };
}

/** The checked rules and the typed, flattened options a `json:` filename shows. */
export interface BlkdebugRules {
  /** The `inject-error` rules, config file first. */
  injectError: InjectErrorRule[];
  /** The `set-state` rules, config file first. */
  setState: SetStateRule[];
  /** The inline options, typed and flattened (`inject-error.0.event` …). */
  flat: Record<string, unknown>;
}

/**
 * Checks the inline `inject-error` and `set-state` lists and the entries of
 * a config file's text, with qemu's texts.
 */
export function parseBlkdebugRules(
  inline: { injectError?: unknown; setState?: unknown },
  configText?: string,
): BlkdebugRules {
  const flat: Record<string, unknown> = {};
  const injectError: InjectErrorRule[] = [];
  const setState: SetStateRule[] = [];
  const config = configText === undefined
    ? { injectError: [], setState: [] }
    : parseBlkdebugConfig(configText);
  const inject = (e: Record<string, unknown>, base: string, record: boolean) => {
    checkKeys(e, INJECT_KEYS, base);
    const rule: InjectErrorRule = {
      event: toEnum(BLKDEBUG_EVENTS, e.event, "event", `${base}.event`),
      state: 0,
      iotype: undefined,
      errno: 5,
      sector: -1,
      once: false,
      immediately: false,
      sectors: 1,
      probability: 1,
    };
    if (record) flat[`${base}.event`] = rule.event;
    const set = <K extends keyof InjectErrorRule>(key: K, v: InjectErrorRule[K], opt: string) => {
      rule[key] = v;
      if (record) flat[`${base}.${opt}`] = v;
    };
    if (e.state !== undefined) set("state", toInt(e.state, `${base}.state`), "state");
    if (e.iotype !== undefined) {
      set("iotype", toEnum(BLKDEBUG_IO_TYPES, e.iotype, "iotype", `${base}.iotype`), "iotype");
    }
    if (e.errno !== undefined) set("errno", toInt(e.errno, `${base}.errno`), "errno");
    if (e.sector !== undefined) set("sector", toInt(e.sector, `${base}.sector`), "sector");
    if (e.once !== undefined) set("once", toBool(e.once, `${base}.once`), "once");
    if (e.immediately !== undefined) {
      set("immediately", toBool(e.immediately, `${base}.immediately`), "immediately");
    }
    if (e[SECTORS_KEY] !== undefined) {
      const n = toInt(e[SECTORS_KEY], `${base}.${SECTORS_KEY}`);
      if (n < 1) {
        throw new OptionError(
          "OPTION_RANGE",
          `Parameter '${base}.${SECTORS_KEY}' must be at least 1`,
        );
      }
      set("sectors", n, SECTORS_KEY);
    }
    if (e[PROBABILITY_KEY] !== undefined) {
      const p = Number(e[PROBABILITY_KEY]);
      if (!(p >= 0 && p <= 1)) {
        throw new OptionError(
          "OPTION_RANGE",
          `Parameter '${base}.${PROBABILITY_KEY}' expects a number from 0 to 1`,
        );
      }
      set("probability", p, PROBABILITY_KEY);
    }
    injectError.push(rule);
  };
  const state = (e: Record<string, unknown>, base: string, record: boolean) => {
    checkKeys(e, SET_STATE_KEYS, base);
    if (e.new_state === undefined) {
      throw new OptionError("OPTION_MISSING", `Parameter '${base}.new_state' is missing`);
    }
    const rule: SetStateRule = {
      event: toEnum(BLKDEBUG_EVENTS, e.event, "event", `${base}.event`),
      state: e.state === undefined ? 0 : toInt(e.state, `${base}.state`),
      newState: toInt(e.new_state, `${base}.new_state`),
    };
    if (record) {
      flat[`${base}.event`] = rule.event;
      if (e.state !== undefined) flat[`${base}.state`] = rule.state;
      flat[`${base}.new_state`] = rule.newState;
    }
    setState.push(rule);
  };
  config.injectError.forEach((e, i) => inject(e, `inject-error.${i}`, false));
  config.setState.forEach((e, i) => state(e, `set-state.${i}`, false));
  asList(inline.injectError, "inject-error").forEach((e, i) =>
    inject(e, `inject-error.${i}`, true)
  );
  asList(inline.setState, "set-state").forEach((e, i) => state(e, `set-state.${i}`, true));
  return { injectError, setState, flat };
}

/**
 * Reads and checks a blkdebug node's options: `config` (read now, as qemu
 * reads it at open), `inject-error`, `set-state`.
 */
export async function openBlkdebug(
  options: Record<string, unknown>,
): Promise<{ debug: Blkdebug; flat: Record<string, unknown> }> {
  let text: string | undefined;
  const config = options.config;
  if (typeof config === "string") {
    try {
      text = await Deno.readTextFile(config);
    } catch (e) {
      const reason = e instanceof Deno.errors.NotFound
        ? "No such file or directory"
        : e instanceof Deno.errors.PermissionDenied
        ? "Permission denied"
        : "Input/output error";
      throw new OptionError(
        "OPTION_BAD_CONFIG",
        `Could not read blkdebug config file: ${reason}`,
        { cause: e },
      );
    }
  }
  const rules = parseBlkdebugRules(
    { injectError: options["inject-error"], setState: options["set-state"] },
    text,
  );
  const flat = { ...(typeof config === "string" ? { config } : {}), ...rules.flat };
  return { debug: new Blkdebug(rules), flat };
}

const ERRNO_CODES: Record<number, [string, string]> = {
  1: ["EPERM", "Operation not permitted"],
  5: ["EIO", "Input/output error"],
  28: ["ENOSPC", "No space left on device"],
};

/** The state of one blkdebug node: its rules, its state number and the active rules. */
export class Blkdebug {
  readonly #inject: InjectErrorRule[];
  readonly #setState: SetStateRule[];
  #active: InjectErrorRule[] = [];
  #random = new Map<InjectErrorRule, Random>();

  /** The next draw for a probabilistic rule, from a PRNG seeded by the rule's index. */
  #chance(rule: InjectErrorRule): number {
    let random = this.#random.get(rule);
    if (!random) {
      random = new Random(this.#inject.indexOf(rule) + 1);
      this.#random.set(rule, random);
    }
    return random.next();
  }
  #state = 1;

  /** Makes a node's state from its checked rules. */
  constructor(rules: Pick<BlkdebugRules, "injectError" | "setState">) {
    this.#inject = [...rules.injectError];
    this.#setState = [...rules.setState];
  }

  /** The current state number (1 at first). */
  get state(): number {
    return this.#state;
  }

  /** Raises `event` (qemu's `blkdebug_debug_event`). */
  event(event: BlkdebugEvent): void {
    let newState = this.#state;
    let injected = false;
    for (const rule of this.#inject) {
      if (rule.event !== event || (rule.state !== 0 && rule.state !== this.#state)) continue;
      if (!injected) this.#active = [];
      injected = true;
      this.#active.unshift(rule);
    }
    for (const rule of this.#setState) {
      if (rule.event !== event || (rule.state !== 0 && rule.state !== this.#state)) continue;
      newState = rule.newState;
    }
    this.#state = newState;
  }

  /** The error for a request (qemu's `rule_check`), or `undefined`; removes a `once` rule that fired. */
  check(iotype: BlkdebugIoType, offset: number, length: number): BlockError | undefined {
    const rule = this.#active.find((r) => {
      const at = r.sector < 0 ? -1 : r.sector * 512;
      const end = at + r.sectors * 512;
      // qemu's test: the rule's sector starts inside the request; a range overlaps it.
      const where = at === -1 ||
        (length > 0 &&
          (r.sectors === 1
            ? at >= offset && at < offset + length
            : at < offset + length && offset < end));
      const type = r.iotype === undefined ? iotype !== "block-status" : r.iotype === iotype;
      return where && type && (r.probability >= 1 || this.#chance(r) < r.probability);
    });
    if (!rule || rule.errno === 0) return undefined;
    if (rule.once) {
      this.#active = this.#active.filter((r) => r !== rule);
      this.#inject.splice(this.#inject.indexOf(rule), 1);
    }
    const [code, text] = ERRNO_CODES[rule.errno] ??
      [`E${rule.errno}`, `Unknown error ${rule.errno}`];
    const error = new BlockError(code, text);
    (error as { immediately?: boolean }).immediately = rule.immediately;
    return error;
  }

  /**
   * Runs a request of `iotype` through the node: raises the events the
   * `raw` format above raises, checks the rules, then runs `io`.
   */
  async request<T>(
    iotype: BlkdebugIoType,
    offset: number,
    length: number,
    io: () => Promise<T>,
  ): Promise<T> {
    const before: BlkdebugEvent[] = iotype === "read"
      ? ["read_aio"]
      : iotype === "write"
      ? ["write_aio", "pwritev"]
      : iotype === "write-zeroes"
      ? ["pwritev_zero"]
      : iotype === "flush"
      ? ["flush_to_os", "flush_to_disk"]
      : [];
    for (const e of before) this.event(e);
    const error = this.check(iotype, offset, length);
    if (error) {
      // immediately=off: qemu returns the error after one more turn of the event loop.
      if (!(error as { immediately?: boolean }).immediately) await Promise.resolve();
      throw error;
    }
    const result = await io();
    if (iotype === "write" || iotype === "write-zeroes") this.event("pwritev_done");
    return result;
  }
}
