/**
 * JSON as qemu-img prints it: four-space indentation, non-ASCII escaped, and
 * keys in the order qemu's hash table happens to yield them.
 *
 * qemu builds a QDict and prints its buckets in order (bucket = `tdb_hash(key)
 * % 512`), so the key order looks arbitrary but is fixed. The orders below
 * were computed from that hash for the keys qemu-img can print and agree with
 * the output of qemu-img 7.2.
 *
 * @module
 */

/** The order of `qemu-img info --output json` keys. */
export const INFO_KEY_ORDER: readonly string[] = [
  "backing-image",
  "compressed",
  "backing-filename-format",
  "snapshots",
  "virtual-size",
  "filename",
  "cluster-size",
  "format",
  "actual-size",
  "format-specific",
  "full-backing-filename",
  "encrypted",
  "backing-filename",
  "dirty-flag",
];

/** The order of `qemu-img check --output json` keys. */
export const CHECK_KEY_ORDER: readonly string[] = [
  "image-end-offset",
  "compressed-clusters",
  "total-clusters",
  "corruptions",
  "corruptions-fixed",
  "check-errors",
  "leaks",
  "leaks-fixed",
  "allocated-clusters",
  "filename",
  "format",
  "fragmented-clusters",
];

/** A copy of `fields` with its keys in `order` (keys not listed come last); `undefined` values are dropped. */
export function orderKeys(
  fields: Record<string, unknown>,
  order: readonly string[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const rank = (k: string) => {
    const i = order.indexOf(k);
    return i < 0 ? order.length : i;
  };
  for (const key of Object.keys(fields).sort((a, b) => rank(a) - rank(b))) {
    if (fields[key] !== undefined) out[key] = fields[key];
  }
  return out;
}

/**
 * Pretty-prints a value like qemu's JSON writer, with a final newline.
 *
 * @example
 * ```ts
 * import { qemuJson } from "./json.ts";
 * console.log(qemuJson({ "virtual-size": 1024 }));
 * // {
 * //     "virtual-size": 1024
 * // }
 * ```
 */
export function qemuJson(value: unknown): string {
  const text = JSON.stringify(value, null, 4).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return text + "\n";
}
