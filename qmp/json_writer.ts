/**
 * qemu's compact JSON writer (`qobject_to_json`): `", "` and `": "`
 * separators, members in `QDict` order ({@linkcode qdictKeys}), ASCII only
 * (everything from U+007F up and every control character as an upper-case
 * `\uXXXX`), doubles as C's `%.17g` (so `inf` for an overflowed literal).
 *
 * @module
 */

import { QNum } from "./json_value.ts";
import { qdictKeys } from "./qdict_order.ts";

/** Formats a double like C's `printf("%.17g")`. */
export function formatDouble(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const exp = x.toExponential(16);
  const e = exp.indexOf("e");
  const x10 = Number(exp.slice(e + 1));
  if (x10 < -4 || x10 >= 17) {
    let mant = exp.slice(0, e);
    if (mant.includes(".")) mant = mant.replace(/0+$/, "").replace(/\.$/, "");
    const sign = x10 < 0 ? "-" : "+";
    const digits = String(Math.abs(x10)).padStart(2, "0");
    return `${mant}e${sign}${digits}`;
  }
  let fixed = x.toFixed(16 - x10);
  if (fixed.includes(".")) fixed = fixed.replace(/0+$/, "").replace(/\.$/, "");
  return fixed;
}

/** Writes a string the way qemu quotes it. */
export function quoteString(s: string): string {
  let out = '"';
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    let esc: string | undefined;
    if (c === 0x22) esc = '\\"';
    else if (c === 0x5c) esc = "\\\\";
    else if (c === 0x08) esc = "\\b";
    else if (c === 0x0c) esc = "\\f";
    else if (c === 0x0a) esc = "\\n";
    else if (c === 0x0d) esc = "\\r";
    else if (c === 0x09) esc = "\\t";
    else if (c < 0x20 || c >= 0x7f) esc = "\\u" + c.toString(16).toUpperCase().padStart(4, "0");
    if (esc !== undefined) {
      out += s.slice(run, i) + esc;
      run = i + 1;
    }
  }
  return out + s.slice(run) + '"';
}

/**
 * Serialises a value as qemu would. Accepts parsed values and plain
 * JavaScript results: integral numbers print as integers, bigints as
 * integers, `undefined` members are left out.
 */
export function toQemuJson(value: unknown): string {
  const parts: string[] = [];
  write(value, parts, 0);
  return parts.join("");
}

function write(v: unknown, out: string[], depth: number): void {
  if (depth > 10000) throw new RangeError("value nested too deeply");
  if (v === null || v === undefined) out.push("null");
  else if (typeof v === "boolean") out.push(v ? "true" : "false");
  else if (typeof v === "string") out.push(quoteString(v));
  else if (typeof v === "number") {
    out.push(Number.isInteger(v) && !Object.is(v, -0) ? String(v) : formatDouble(v));
  } else if (typeof v === "bigint") out.push(String(v));
  else if (v instanceof QNum) {
    out.push(v.kind === "double" ? formatDouble(v.value as number) : String(v.value));
  } else if (Array.isArray(v)) {
    out.push("[");
    for (let i = 0; i < v.length; i++) {
      if (i) out.push(", ");
      write(v[i], out, depth + 1);
    }
    out.push("]");
  } else if (typeof v === "object") {
    out.push("{");
    let first = true;
    const obj = v as Record<string, unknown>;
    for (const k of qdictKeys(obj)) {
      const member = obj[k];
      if (member === undefined) continue;
      if (!first) out.push(", ");
      first = false;
      out.push(quoteString(k), ": ");
      write(member, out, depth + 1);
    }
    out.push("}");
  } else {
    throw new TypeError(`cannot write ${typeof v} as JSON`);
  }
}
