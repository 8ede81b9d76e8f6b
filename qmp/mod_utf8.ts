/**
 * qemu's "modified UTF-8": UTF-8 in which U+0000 is written `C0 80`, so C
 * strings can carry it. qemu decodes and validates strings with these rules
 * (overlong forms other than `C0 80`, surrogates, noncharacters and code
 * points beyond U+10FFFF are invalid), and its JSON writer prints every
 * invalid sequence as U+FFFD.
 *
 * @module
 */

/** Result of {@linkcode decodeCodePoint}: the code point (-1 if invalid) and the next index. */
export interface DecodedCodePoint {
  cp: number;
  end: number;
}

/** Whether `cp` is a code point qemu accepts in a string. */
export function isValidCodePoint(cp: number): boolean {
  if (cp < 0 || cp > 0x10ffff) return false;
  if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false;
  return !(cp >= 0xd800 && cp <= 0xdfff);
}

const MIN_CP = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];

/**
 * Decodes one code point at `bytes[i]` (up to `end`), exactly as qemu's
 * `mod_utf8_codepoint` with a 6-byte window: returns -1 for an invalid
 * sequence and how far it reached.
 */
export function decodeCodePoint(bytes: Uint8Array, i: number, end: number): DecodedCodePoint {
  let p = i;
  let byte = bytes[p++]!;
  let cp: number;
  if (byte < 0x80) {
    cp = byte;
  } else if (byte >= 0xfe || (byte & 0x40) === 0) {
    cp = -1;
  } else {
    let len = 0;
    let mask = 0x80;
    for (; byte & mask; mask >>= 1) len++;
    cp = byte & (mask - 1);
    for (let k = 1; k < len; k++) {
      byte = p < end && k < 6 ? bytes[p]! : 0;
      if ((byte & 0xc0) !== 0x80) return { cp: -1, end: p };
      p++;
      cp = cp * 64 + (byte & 0x3f);
    }
    if (cp > 0x10ffff) cp = -1;
    else if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) cp = -1;
    else if (cp >= 0xd800 && cp <= 0xdfff) cp = -1;
    else if (cp < MIN_CP[len - 2]! && !(cp === 0 && len === 2)) cp = -1;
  }
  return { cp, end: p };
}

/**
 * Turns bytes into the text qemu's JSON writer would print for them: the C
 * string ends at the first NUL byte, invalid sequences become U+FFFD.
 */
export function decodeLenient(bytes: Uint8Array, start = 0, end = bytes.length): string {
  let out = "";
  let i = start;
  while (i < end && bytes[i] !== 0) {
    const d = decodeCodePoint(bytes, i, end);
    out += String.fromCodePoint(d.cp < 0 ? 0xfffd : d.cp);
    i = d.end === i ? i + 1 : d.end;
  }
  return out;
}

/** Encodes a string as modified UTF-8 bytes (U+0000 as `C0 80`). */
export function encodeModUtf8(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp > 0 && cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) {
      out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    } else {
      out.push(
        0xf0 | (cp >> 18),
        0x80 | ((cp >> 12) & 0x3f),
        0x80 | ((cp >> 6) & 0x3f),
        0x80 | (cp & 0x3f),
      );
    }
  }
  return Uint8Array.from(out);
}
