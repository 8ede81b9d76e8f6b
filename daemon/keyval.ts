/**
 * qemu's `key=value` option syntax, as qemu-storage-daemon reads
 * `--blockdev`, `--chardev`, `--monitor`, `--nbd-server` and `--export`.
 *
 * ```
 * driver=qed,node-name=ov,file.driver=file,file.filename=a,,b.qed
 * └────┬───┘             └────────┬──────┘             └──┬──┘
 *  a key=value pair   a dotted key: nested object   ",," is a literal comma
 *
 * driver=quorum,children.0=a,children.1.driver=qed,...
 *               └────────────┬──────────┘
 *   numbers as keys: a list (children[0] = "a", children[1] = {driver: …})
 * ```
 *
 * Values stay strings: the option's schema converts them (`on`/`off`,
 * integers) and says what was wrong, as qemu does.
 *
 * @module
 */

import { QedstreamError } from "../io/error.ts";

/** A bad option string: the message is qemu's text. */
export class OptionError extends QedstreamError {}

/** A parsed option string: strings, nested by dotted keys, lists where the keys are numbers. */
export interface KeyvalTree {
  [key: string]: KeyvalValue;
}

/** One value of a {@linkcode KeyvalTree}. */
export type KeyvalValue = string | KeyvalTree | KeyvalValue[];

/** Objects built while parsing, before numbered keys become lists. */
interface RawTree {
  [key: string]: string | RawTree;
}

const KEY_FRAGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * Parses `text` into a tree. When `impliedKey` is given, a first element
 * without `=` is its value (qemu-storage-daemon's `--blockdev file`).
 * A repeated key takes its last value. An object whose keys are all numbers
 * becomes a list in their order, as qemu's keyval makes it (`children.0`,
 * `children.1`); a gap is `Parameter 'children.1' missing`.
 *
 * @example
 * ```ts
 * import { parseKeyval } from "./keyval.ts";
 * console.log(parseKeyval("driver=file,cache.direct=on,filename=a,,b"));
 * // { driver: "file", cache: { direct: "on" }, filename: "a,b" }
 * console.log(parseKeyval("children.1=b,children.0=a"));
 * // { children: [ "a", "b" ] }
 * ```
 */
export function parseKeyval(text: string, impliedKey?: string): KeyvalTree {
  const tree: RawTree = {};
  let pos = 0;
  let first = true;
  while (pos < text.length) {
    let key: string;
    const eq = text.indexOf("=", pos);
    const comma = text.indexOf(",", pos);
    const keyEnd = eq < 0 ? text.length : eq;
    if (first && impliedKey !== undefined && (comma >= 0 ? comma < keyEnd : eq < 0)) {
      key = impliedKey;
    } else {
      key = text.slice(pos, keyEnd);
      if (comma >= 0 && comma < keyEnd) key = text.slice(pos, comma);
      const fragments = key.split(".");
      if (!fragments.every((f) => KEY_FRAGMENT.test(f))) {
        throw new OptionError("OPTION_INVALID_KEY", `Invalid parameter '${key}'`);
      }
      if (eq < 0 || (comma >= 0 && comma < eq)) {
        throw new OptionError("OPTION_NO_VALUE", `Expected '=' after parameter '${key}'`);
      }
      pos = eq + 1;
    }
    first = false;
    // The value runs to the next single comma; ",," stands for a comma.
    let value = "";
    while (pos < text.length) {
      const c = text[pos]!;
      if (c === ",") {
        if (text[pos + 1] === ",") {
          value += ",";
          pos += 2;
          continue;
        }
        pos++;
        break;
      }
      value += c;
      pos++;
    }
    insert(tree, key, value);
  }
  // The root stays an object: numbered keys there are refused by the schema as unexpected.
  const out: KeyvalTree = {};
  for (const [key, value] of Object.entries(tree)) out[key] = listify(value, key);
  return out;
}

const INDEX = /^[0-9]+$/;

/**
 * qemu's `keyval_listify`: below the root, an object whose keys are all
 * numbers becomes a list (nested values first); numbers mixed with names are
 * `Parameters 'x.*' used inconsistently`; the first number missing from
 * 0, 1, … is `Parameter 'x.N' missing`.
 */
function listify(value: string | RawTree, path: string): KeyvalValue {
  if (typeof value === "string") return value;
  const entries = Object.entries(value).map(([k, v]): [string, KeyvalValue] => [
    k,
    listify(v, `${path}.${k}`),
  ]);
  const numbered = entries.filter(([k]) => INDEX.test(k)).length;
  if (numbered === 0) return Object.fromEntries(entries);
  if (numbered < entries.length) {
    throw new OptionError("OPTION_INCONSISTENT", `Parameters '${path}.*' used inconsistently`);
  }
  // As qemu: as many slots as keys; an index beyond them leaves a gap to report.
  const slots: (KeyvalValue | undefined)[] = new Array(entries.length).fill(undefined);
  for (const [k, v] of entries) {
    const index = Number(k);
    if (index < slots.length) slots[index] = v;
  }
  const gap = slots.indexOf(undefined);
  if (gap >= 0) throw new OptionError("OPTION_MISSING", `Parameter '${path}.${gap}' missing`);
  return slots as KeyvalValue[];
}

function insert(tree: RawTree, key: string, value: string): void {
  const fragments = key.split(".");
  let node = tree;
  for (let i = 0; i < fragments.length - 1; i++) {
    const name = fragments[i]!;
    const next = node[name];
    if (typeof next === "string") {
      throw new OptionError(
        "OPTION_INCONSISTENT",
        `Parameters '${fragments.slice(0, i + 1).join(".")}.*' used inconsistently`,
      );
    }
    node = next ?? (node[name] = {});
  }
  const last = fragments[fragments.length - 1]!;
  if (typeof node[last] === "object") {
    throw new OptionError("OPTION_INCONSISTENT", `Parameters '${key}.*' used inconsistently`);
  }
  node[last] = value;
}

/**
 * Parses an option argument as qemu-storage-daemon does: JSON when it
 * starts with `{`, else `key=value` syntax.
 */
export function parseOptionArgument(text: string, impliedKey?: string): Record<string, unknown> {
  if (text.trimStart().startsWith("{")) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (cause) {
      throw new OptionError("OPTION_BAD_JSON", `JSON parse error, ${(cause as Error).message}`, {
        cause,
      });
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new OptionError("OPTION_BAD_JSON", "Invalid parameter type, expected: object");
    }
    return value as Record<string, unknown>;
  }
  return parseKeyval(text, impliedKey);
}
