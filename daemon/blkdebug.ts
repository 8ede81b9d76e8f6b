/**
 * A subset of qemu's `blkdebug` driver: error injection on reads, so that
 * `on-error` can be exercised end to end with the same `--blockdev` options
 * as qemu-storage-daemon.
 *
 * Supported: `image=` (the child) and `inject-error.N.{event,errno,sector,once}`
 * with `event=read_aio` (qemu's raw driver raises it for every read, so the
 * rule applies to every read through the node); `errno` defaults to 5 (EIO),
 * 28 is ENOSPC; `sector` (512-byte units) restricts the rule to reads that
 * cover that sector, default any; `once=on` removes the rule after it fired.
 *
 * @module
 */

import { BlockError } from "../block/error.ts";
import { OptionError } from "./keyval.ts";

/** One `inject-error` rule. */
export interface InjectErrorRule {
  /** The event; only `read_aio`. */
  event: "read_aio";
  /** The errno to fail with. Default 5 (EIO). */
  errno: number;
  /** The sector a read must cover, or -1 for any read. Default -1. */
  sector: number;
  /** Whether the rule fires once only. Default false. */
  once: boolean;
}

const RULE_KEYS = ["event", "errno", "sector", "once"] as const;

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

/**
 * Checks the `inject-error` list (a keyval tree `{"0": {...}}` or a JSON
 * array) and returns the rules plus the typed, flattened options qemu shows
 * in a `json:` filename.
 *
 * @example
 * ```ts
 * import { parseInjectErrors } from "./blkdebug.ts";
 * const { rules, flat } = parseInjectErrors({ "0": { event: "read_aio", sector: "8192" } });
 * console.log(rules[0]?.sector, flat); // 8192 { "inject-error.0.event": "read_aio", "inject-error.0.sector": 8192 }
 * ```
 */
export function parseInjectErrors(
  value: unknown,
): { rules: InjectErrorRule[]; flat: Record<string, unknown> } {
  const rules: InjectErrorRule[] = [];
  const flat: Record<string, unknown> = {};
  if (value === undefined) return { rules, flat };
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
      "Invalid parameter type for 'inject-error', expected: array",
    );
  }
  list.forEach((entry, i) => {
    const base = `inject-error.${i}`;
    if (typeof entry !== "object" || entry === null) {
      throw new OptionError(
        "OPTION_BAD_TYPE",
        `Invalid parameter type for '${base}', expected: object`,
      );
    }
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) {
      if (!(RULE_KEYS as readonly string[]).includes(key)) {
        throw new OptionError("OPTION_UNEXPECTED", `Parameter '${base}.${key}' is unexpected`);
      }
    }
    if (e.event === undefined) {
      throw new OptionError("OPTION_MISSING", `Parameter '${base}.event' is missing`);
    }
    if (e.event !== "read_aio") {
      throw new OptionError(
        "OPTION_UNSUPPORTED",
        `blkdebug in qedstream injects errors on 'read_aio' only, not '${String(e.event)}'`,
      );
    }
    const rule: InjectErrorRule = { event: "read_aio", errno: 5, sector: -1, once: false };
    flat[`${base}.event`] = "read_aio";
    if (e.errno !== undefined) flat[`${base}.errno`] = rule.errno = toInt(e.errno, `${base}.errno`);
    if (e.sector !== undefined) {
      flat[`${base}.sector`] = rule.sector = toInt(e.sector, `${base}.sector`);
    }
    if (e.once !== undefined) flat[`${base}.once`] = rule.once = toBool(e.once, `${base}.once`);
    rules.push(rule);
  });
  return { rules, flat };
}

/**
 * Applies the rules to a read of `length` bytes at `offset`: throws the
 * injected error (code `EIO` / `ENOSPC` / `E<n>`) if a rule matches,
 * removing a `once` rule that fired.
 */
export function checkInjectedRead(rules: InjectErrorRule[], offset: number, length: number): void {
  const i = rules.findIndex((r) =>
    r.sector < 0 || (r.sector * 512 >= offset && r.sector * 512 < offset + length)
  );
  if (i < 0) return;
  const rule = rules[i]!;
  if (rule.once) rules.splice(i, 1);
  const code = rule.errno === 28 ? "ENOSPC" : rule.errno === 5 ? "EIO" : `E${rule.errno}`;
  const text = rule.errno === 28 ? "No space left on device" : "Input/output error";
  throw new BlockError(code, text);
}
