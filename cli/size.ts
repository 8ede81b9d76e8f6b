/**
 * Sizes as qemu-img and qemu-io read and print them.
 *
 * - {@linkcode parseSize}: `1M`, `1.5k`, `0x100`, `4096` (qemu's `qemu_strtosz`
 *   rules: suffixes B/K/M/G/T/P/E in either case, a fraction only with a
 *   suffix other than B, hexadecimal without a fraction).
 * - {@linkcode formatHumanSize}: `4 MiB`, `580 KiB`, `0.977 KiB` (qemu-img info's
 *   three significant digits).
 * - {@linkcode formatIoSize}: `4 KiB`, `97.656 KiB`, `1000 bytes` (qemu-io's
 *   three decimals with `.000` trimmed).
 *
 * @module
 */

const UNITS = "BKMGTPE";

/** The largest size qemu accepts (`INT64_MAX`), as the message states it. */
export const QEMU_MAX_SIZE = 2n ** 63n - 1n;

/**
 * Parses a size the way qemu-img and qemu-io do. Returns the byte count as a
 * bigint (sizes may exceed 2^53 before a format refuses them), or `null` when
 * the text is not a size.
 *
 * @example
 * ```ts
 * import { parseSize } from "./size.ts";
 * console.log(parseSize("1.5k")); // 1536n
 * console.log(parseSize("1.5")); // null
 * ```
 */
export function parseSize(text: string): bigint | null {
  // Leading white space is skipped like strtod/strtoull do; nothing may follow the suffix.
  const m = /^\s*(?:0[xX]([0-9a-fA-F]+)|([0-9]+)(?:\.([0-9]*))?)([bBkKmMgGtTpPeE]?)$/.exec(text);
  if (!m) return null;
  const [, hex, whole, fraction, suffix = ""] = m;
  const shift = suffix === "" ? 0 : UNITS.indexOf(suffix.toUpperCase()) * 10;
  const mul = 1n << BigInt(shift);
  if (hex !== undefined) return BigInt(`0x${hex}`) * mul;
  let value = BigInt(whole!) * mul;
  if (fraction !== undefined && /[1-9]/.test(fraction)) {
    // qemu refuses a fraction of a byte; with a unit the fraction is truncated to whole bytes.
    if (shift === 0) return null;
    const digits = BigInt(fraction);
    value += (digits * mul) / 10n ** BigInt(fraction.length);
  } else if (fraction !== undefined && shift === 0) {
    return null;
  }
  return value;
}

/**
 * C's `%.3g` for a non-negative finite number: three significant digits,
 * trailing zeros removed, exponent form only when the exponent is below -4
 * or at least 3.
 */
export function formatG3(value: number): string {
  if (value === 0) return "0";
  const exp = Number(value.toExponential(2).split("e")[1]);
  if (exp < -4 || exp >= 3) {
    const [mantissa, e] = value.toExponential(2).split("e") as [string, string];
    const m = mantissa.replace(/\.?0+$/, "");
    const sign = e.startsWith("-") ? "-" : "+";
    return `${m}e${sign}${e.replace(/^[+-]/, "").padStart(2, "0")}`;
  }
  const fixed = value.toFixed(Math.max(0, 2 - exp));
  return fixed.includes(".") ? fixed.replace(/\.?0+$/, "") : fixed;
}

/**
 * A byte count as qemu-img info prints it (`virtual size: 4 MiB`): the unit
 * switches up once the number would reach 1000, three significant digits.
 *
 * @example
 * ```ts
 * import { formatHumanSize } from "./size.ts";
 * console.log(formatHumanSize(593920)); // 580 KiB
 * ```
 */
export function formatHumanSize(bytes: number): string {
  const suffixes = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
  // qemu picks the power from frexp(bytes * 1.024): the unit goes up when the number reaches 1000.
  let i = 0;
  if (bytes > 0) {
    const e = Math.floor(Math.log2(bytes / (1000 / 1024))) + 1;
    i = Math.min(suffixes.length - 1, Math.max(0, Math.floor((e - 1) / 10)));
  }
  return `${formatG3(bytes / 2 ** (i * 10))} ${suffixes[i]}B`;
}

/**
 * A byte count or rate as qemu-io prints it (`4 KiB`, `97.656 KiB`,
 * `1000 bytes`).
 *
 * @example
 * ```ts
 * import { formatIoSize } from "./size.ts";
 * console.log(formatIoSize(100000)); // 97.656 KiB
 * ```
 */
export function formatIoSize(value: number): string {
  const units: [number, string][] = [
    [2 ** 60, " EiB"],
    [2 ** 50, " PiB"],
    [2 ** 40, " TiB"],
    [2 ** 30, " GiB"],
    [2 ** 20, " MiB"],
    [2 ** 10, " KiB"],
  ];
  let suffix = " bytes";
  for (const [unit, name] of units) {
    if (value >= unit) {
      value /= unit;
      suffix = name;
      break;
    }
  }
  const text = value.toFixed(3);
  return (text.endsWith(".000") ? text.slice(0, -4) : text) + suffix;
}
