/**
 * qemu's `key=value` option syntax, as qemu-storage-daemon reads
 * `--blockdev`, `--chardev`, `--monitor`, `--nbd-server` and `--export`.
 *
 * ```
 * driver=qed,node-name=ov,file.driver=file,file.filename=a,,b.qed
 * └────┬───┘             └────────┬──────┘             └──┬──┘
 *  a key=value pair   a dotted key: nested object   ",," is a literal comma
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

/** A parsed option string: strings, nested by dotted keys. */
export interface KeyvalTree {
  [key: string]: string | KeyvalTree;
}

const KEY_FRAGMENT = /^[A-Za-z0-9_-]+$/;

/**
 * Parses `text` into a tree. When `impliedKey` is given, a first element
 * without `=` is its value (qemu-storage-daemon's `--blockdev file`).
 * A repeated key takes its last value.
 *
 * @example
 * ```ts
 * import { parseKeyval } from "./keyval.ts";
 * console.log(parseKeyval("driver=file,cache.direct=on,filename=a,,b"));
 * // { driver: "file", cache: { direct: "on" }, filename: "a,b" }
 * ```
 */
export function parseKeyval(text: string, impliedKey?: string): KeyvalTree {
  const tree: KeyvalTree = {};
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
  return tree;
}

function insert(tree: KeyvalTree, key: string, value: string): void {
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
