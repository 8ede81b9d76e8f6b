/**
 * A streaming JSON parser that behaves like qemu's (`qobject/json-lexer.c`,
 * `json-streamer.c`, `json-parser.c`, qemu 7.2).
 *
 * Bytes go in as they arrive, in chunks of any size; a value is emitted as
 * soon as its last token is complete, so no newline is needed, several values
 * may share a chunk and one value may span many. Errors are emitted as
 * qemu's texts (`JSON parse error, expecting value`, `… stray '\u0001'`,
 * `… duplicate key`, the token size / count / nesting limit errors), and
 * the parser resynchronises the way qemu's does: a lexical error skips input
 * up to the next structural character or control character (§1.6).
 *
 * ```
 *  bytes ──► lexer (state table, one byte at a time) ──► tokens
 *  tokens ──► streamer (counts { [ } ], limits) ──► a complete token list
 *  token list ──► recursive-descent parser ──► value or first error
 * ```
 *
 * Limits (qemu's, configurable): 64 MiB of token text per message and per
 * token, 2 Mi tokens per message, nesting depth 1024. Memory is bounded by
 * about twice the token-size limit, whatever the input.
 *
 * Extensions qemu accepts are accepted too: single-quoted strings, the `\'`
 * escape, and `\u0000` inside strings.
 *
 * @module
 */

import { hasMember, type JsonValue, newJsonObject, QNum } from "./json_value.ts";
import { decodeCodePoint, decodeLenient, isValidCodePoint } from "./mod_utf8.ts";

// Lexer states; 0 is the error state (every unlisted transition).
const IN_ERROR = 0;
const IN_RECOVERY = 1;
const IN_DQ_ESC = 2;
const IN_DQ = 3;
const IN_SQ_ESC = 4;
const IN_SQ = 5;
const IN_ZERO = 6;
const IN_EXP_DIGITS = 7;
const IN_EXP_SIGN = 8;
const IN_EXP_E = 9;
const IN_MANTISSA = 10;
const IN_MANTISSA_DIGITS = 11;
const IN_DIGITS = 12;
const IN_SIGN = 13;
const IN_KEYWORD = 14;
const IN_START = 15;
const STATES = 16;

// Token types, numbered above the states as in qemu.
const T_LCURLY = 100;
const T_RCURLY = 101;
const T_LSQUARE = 102;
const T_RSQUARE = 103;
const T_COLON = 104;
const T_COMMA = 105;
const T_INTEGER = 106;
const T_FLOAT = 107;
const T_KEYWORD = 108;
const T_STRING = 109;
const LOOKAHEAD = 0x80;

/** The lexer's transition table: `TABLE[state * 256 + byte]`. */
const TABLE = buildTable();

function buildTable(): Uint8Array {
  const t = new Uint8Array(STATES * 256);
  const set = (s: number, from: number, to: number, v: number) => {
    for (let c = from; c <= to; c++) t[s * 256 + c] = v;
  };
  const ch = (c: string) => c.charCodeAt(0);
  const one = (s: number, c: string, v: number) => set(s, ch(c), ch(c), v);
  // A token ends at any byte that cannot continue it (qemu's TERMINAL).
  const terminal = (s: number, tok: number) => set(s, 0, 0xff, tok | LOOKAHEAD);

  // Error recovery: skip to a structural or control character, or 0xFE/0xFF.
  set(IN_RECOVERY, 0, 0x1f, IN_START | LOOKAHEAD);
  set(IN_RECOVERY, 0x20, 0xfd, IN_RECOVERY);
  set(IN_RECOVERY, 0xfe, 0xff, IN_START | LOOKAHEAD);
  one(IN_RECOVERY, "\t", IN_RECOVERY);
  for (const c of "[]{}:,") one(IN_RECOVERY, c, IN_START | LOOKAHEAD);

  set(IN_DQ_ESC, 0x20, 0xfd, IN_DQ);
  set(IN_DQ, 0x20, 0xfd, IN_DQ);
  one(IN_DQ, "\\", IN_DQ_ESC);
  one(IN_DQ, '"', T_STRING);
  set(IN_SQ_ESC, 0x20, 0xfd, IN_SQ);
  set(IN_SQ, 0x20, 0xfd, IN_SQ);
  one(IN_SQ, "\\", IN_SQ_ESC);
  one(IN_SQ, "'", T_STRING);

  terminal(IN_ZERO, T_INTEGER);
  set(IN_ZERO, ch("0"), ch("9"), IN_ERROR);
  one(IN_ZERO, ".", IN_MANTISSA);
  terminal(IN_EXP_DIGITS, T_FLOAT);
  set(IN_EXP_DIGITS, ch("0"), ch("9"), IN_EXP_DIGITS);
  set(IN_EXP_SIGN, ch("0"), ch("9"), IN_EXP_DIGITS);
  one(IN_EXP_E, "-", IN_EXP_SIGN);
  one(IN_EXP_E, "+", IN_EXP_SIGN);
  set(IN_EXP_E, ch("0"), ch("9"), IN_EXP_DIGITS);
  terminal(IN_MANTISSA_DIGITS, T_FLOAT);
  set(IN_MANTISSA_DIGITS, ch("0"), ch("9"), IN_MANTISSA_DIGITS);
  one(IN_MANTISSA_DIGITS, "e", IN_EXP_E);
  one(IN_MANTISSA_DIGITS, "E", IN_EXP_E);
  set(IN_MANTISSA, ch("0"), ch("9"), IN_MANTISSA_DIGITS);
  terminal(IN_DIGITS, T_INTEGER);
  set(IN_DIGITS, ch("0"), ch("9"), IN_DIGITS);
  one(IN_DIGITS, "e", IN_EXP_E);
  one(IN_DIGITS, "E", IN_EXP_E);
  one(IN_DIGITS, ".", IN_MANTISSA);
  one(IN_SIGN, "0", IN_ZERO);
  set(IN_SIGN, ch("1"), ch("9"), IN_DIGITS);
  terminal(IN_KEYWORD, T_KEYWORD);
  set(IN_KEYWORD, ch("a"), ch("z"), IN_KEYWORD);

  one(IN_START, '"', IN_DQ);
  one(IN_START, "'", IN_SQ);
  one(IN_START, "0", IN_ZERO);
  set(IN_START, ch("1"), ch("9"), IN_DIGITS);
  one(IN_START, "-", IN_SIGN);
  one(IN_START, "{", T_LCURLY);
  one(IN_START, "}", T_RCURLY);
  one(IN_START, "[", T_LSQUARE);
  one(IN_START, "]", T_RSQUARE);
  one(IN_START, ",", T_COMMA);
  one(IN_START, ":", T_COLON);
  set(IN_START, ch("a"), ch("z"), IN_KEYWORD);
  for (const c of " \t\r\n") one(IN_START, c, IN_START);
  return t;
}

/** Limits of {@linkcode JsonMessageParser}; qemu's values by default. */
export interface JsonParserLimits {
  /** Bytes of token text per message, and per token. Default 64 MiB. */
  maxTokenSize?: number;
  /** Tokens per message. Default 2 Mi (2,097,152). */
  maxTokenCount?: number;
  /** Open `{` plus `[` at once. Default 1024. */
  maxNesting?: number;
}

/** qemu's limits. */
export const QEMU_JSON_LIMITS: Readonly<Required<JsonParserLimits>> = {
  maxTokenSize: 64 << 20,
  maxTokenCount: 2 << 20,
  maxNesting: 1024,
};

/** What the parser emits per message: a value, or qemu's error text. */
export type JsonMessage = { value: JsonValue; error?: undefined } | {
  value?: undefined;
  error: string;
};

/** Called once per complete message (value or error), in input order. */
export type JsonMessageHandler = (message: JsonMessage) => void;

const SHRINK_ABOVE = 1 << 20;

/**
 * qemu's JSON message parser: feed bytes, receive values and errors.
 *
 * @example Two values in one chunk, one value split over two
 * ```ts
 * import { JsonMessageParser } from "./json_parser.ts";
 * const seen: unknown[] = [];
 * const p = new JsonMessageParser((m) => seen.push(m.error ?? m.value));
 * const enc = new TextEncoder();
 * p.feed(enc.encode('{"a": 1}[2]{"b":'));
 * p.feed(enc.encode(' 3} x'));
 * console.log(seen.length); // 3 (the "x" is still being lexed)
 * ```
 */
export class JsonMessageParser {
  readonly #emit: JsonMessageHandler;
  readonly #limits: Required<JsonParserLimits>;
  // Token text: committed tokens in [0, #committed), the token being lexed after it.
  #buf = new Uint8Array(256);
  #committed = 0;
  #cur = 0;
  #types = new Uint8Array(64);
  #ends = new Uint32Array(64);
  #count = 0;
  #state = IN_START;
  #brace = 0;
  #bracket = 0;
  #paused = false;

  /** Makes a parser that reports every message to `onMessage`. */
  constructor(onMessage: JsonMessageHandler, limits: JsonParserLimits = {}) {
    this.#emit = onMessage;
    this.#limits = { ...QEMU_JSON_LIMITS, ...limits };
  }

  /** Bytes of input this parser holds now (its token buffer): bounded by the token size limit. */
  get heldBytes(): number {
    return this.#buf.length;
  }

  /**
   * Asks {@linkcode feed} to return after the byte being processed; call it
   * from the message handler to stop reading (as qemu suspends its monitor).
   */
  pause(): void {
    this.#paused = true;
  }

  /**
   * Lexes `bytes` from `start`; returns the index after the last byte
   * consumed (`bytes.length` unless {@linkcode pause} was called).
   */
  feed(bytes: Uint8Array, start = 0): number {
    this.#paused = false;
    const max = this.#limits.maxTokenSize;
    let i = start;
    while (i < bytes.length) {
      const state = this.#state;
      // Fast path through string bodies and skipped input.
      if (state === IN_DQ || state === IN_SQ || state === IN_RECOVERY) {
        const stop = state === IN_DQ ? 0x22 : state === IN_SQ ? 0x27 : -1;
        let j = i;
        const room = state === IN_RECOVERY ? Infinity : max + 1 - this.#cur;
        const end = Math.min(bytes.length, i + room);
        if (state === IN_RECOVERY) {
          while (j < end) {
            const c = bytes[j]!;
            if (
              c < 0x20 || c > 0xfd || c === 0x5b || c === 0x5d || c === 0x7b || c === 0x7d ||
              c === 0x3a || c === 0x2c
            ) break;
            j++;
          }
        } else {
          while (j < end) {
            const c = bytes[j]!;
            if (c < 0x20 || c > 0xfd || c === 0x5c || c === stop) break;
            j++;
          }
          if (j > i) this.#append(bytes, i, j);
        }
        if (j > i) {
          i = j;
          if (this.#cur > max) this.#overflow();
          continue;
        }
      }
      this.#feedByte(bytes[i]!);
      i++;
      if (this.#paused) break;
    }
    return i;
  }

  /** Discards any partial message and starts afresh (as on a new connection). */
  reset(): void {
    this.#state = IN_START;
    this.#cur = 0;
    this.#clearTokens();
  }

  #append(bytes: Uint8Array, from: number, to: number): void {
    const need = this.#committed + this.#cur + (to - from);
    if (need > this.#buf.length) this.#grow(need);
    this.#buf.set(bytes.subarray(from, to), this.#committed + this.#cur);
    this.#cur += to - from;
  }

  #appendByte(c: number): void {
    const at = this.#committed + this.#cur;
    if (at >= this.#buf.length) this.#grow(at + 1);
    this.#buf[at] = c;
    this.#cur++;
  }

  #grow(need: number): void {
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#committed + this.#cur));
    this.#buf = next;
  }

  #feedByte(c: number): void {
    for (;;) {
      const entry = TABLE[this.#state * 256 + c]!;
      const consumed = (entry & LOOKAHEAD) === 0;
      const next = entry & ~LOOKAHEAD;
      if (consumed) this.#appendByte(c);
      if (next >= T_LCURLY) {
        this.#token(next);
        this.#cur = 0;
        this.#state = IN_START;
      } else if (next === IN_START) {
        this.#cur = 0;
        this.#state = IN_START;
      } else if (next === IN_ERROR) {
        this.#token(IN_ERROR);
        this.#cur = 0;
        this.#state = IN_RECOVERY;
      } else if (next === IN_RECOVERY) {
        this.#cur = 0;
        this.#state = IN_RECOVERY;
      } else {
        this.#state = next;
      }
      if (consumed) break;
    }
    if (this.#cur > this.#limits.maxTokenSize) this.#overflow();
  }

  /** A single token grew past the limit: hand it on as is, then start afresh. */
  #overflow(): void {
    this.#token(this.#state);
    this.#cur = 0;
    this.#state = IN_START;
  }

  #token(type: number): void {
    const len = this.#cur;
    switch (type) {
      case T_LCURLY:
        this.#brace++;
        break;
      case T_RCURLY:
        this.#brace--;
        break;
      case T_LSQUARE:
        this.#bracket++;
        break;
      case T_RSQUARE:
        this.#bracket--;
        break;
      case IN_ERROR: {
        const at = this.#committed;
        this.#finish({
          error: `JSON parse error, stray '${decodeLenient(this.#buf, at, at + len)}'`,
        });
        return;
      }
    }
    // qemu's guards: total token text, token count, nesting depth.
    if (this.#tokenSize() + len + 1 > this.#limits.maxTokenSize) {
      this.#finish({ error: "JSON token size limit exceeded" });
      return;
    }
    if (this.#count + 1 > this.#limits.maxTokenCount) {
      this.#finish({ error: "JSON token count limit exceeded" });
      return;
    }
    if (this.#brace + this.#bracket > this.#limits.maxNesting) {
      this.#finish({ error: "JSON nesting depth limit exceeded" });
      return;
    }
    if (this.#count === this.#types.length) {
      const types = new Uint8Array(this.#count * 2);
      types.set(this.#types);
      this.#types = types;
      const ends = new Uint32Array(this.#count * 2);
      ends.set(this.#ends);
      this.#ends = ends;
    }
    this.#committed += len;
    this.#cur = 0;
    this.#types[this.#count] = type;
    this.#ends[this.#count] = this.#committed;
    this.#count++;
    if ((this.#brace > 0 || this.#bracket > 0) && this.#brace >= 0 && this.#bracket >= 0) return;
    this.#finish(new TokenParser(this.#buf, this.#types, this.#ends, this.#count).parse());
  }

  #tokenSize(): number {
    return this.#committed;
  }

  #finish(message: JsonMessage): void {
    this.#clearTokens();
    this.#emit(message);
  }

  #clearTokens(): void {
    this.#brace = 0;
    this.#bracket = 0;
    this.#count = 0;
    // Only called while the current token is being handed on, so it goes too.
    this.#committed = 0;
    if (this.#buf.length > SHRINK_ABOVE && this.#cur < SHRINK_ABOVE / 2) {
      this.#buf = this.#buf.slice(0, SHRINK_ABOVE);
    }
    if (this.#types.length > 65536) {
      this.#types = new Uint8Array(64);
      this.#ends = new Uint32Array(64);
    }
  }
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Parses one message's tokens like qemu's `json_parser_parse` (first error wins). */
class TokenParser {
  #pos = 0;
  #error: string | undefined;

  constructor(
    readonly buf: Uint8Array,
    readonly types: Uint8Array,
    readonly ends: Uint32Array,
    readonly count: number,
  ) {}

  parse(): JsonMessage {
    const value = this.#value();
    if (this.#error !== undefined || value === undefined) {
      return { error: this.#error ?? "JSON parse error, expecting value" };
    }
    return { value };
  }

  #fail(message: string): void {
    if (this.#error !== undefined) return;
    // qemu formats the detail into a 1024-byte buffer.
    this.#error = `JSON parse error, ${message.length > 1023 ? message.slice(0, 1023) : message}`;
  }

  #peek(): number {
    return this.#pos < this.count ? this.types[this.#pos]! : -1;
  }

  #start(i: number): number {
    return i === 0 ? 0 : this.ends[i - 1]!;
  }

  #text(i: number): string {
    let s = "";
    for (let p = this.#start(i); p < this.ends[i]!; p++) s += String.fromCharCode(this.buf[p]!);
    return s;
  }

  #value(): JsonValue | undefined {
    const type = this.#peek();
    switch (type) {
      case -1:
        this.#fail("premature EOI");
        return undefined;
      case T_LCURLY:
        return this.#object();
      case T_LSQUARE:
        return this.#array();
      case T_INTEGER:
      case T_FLOAT:
      case T_STRING:
        return this.#literal();
      case T_KEYWORD: {
        const word = this.#text(this.#pos++);
        if (word === "true") return true;
        if (word === "false") return false;
        if (word === "null") return null;
        this.#fail(`invalid keyword '${word}'`);
        return undefined;
      }
      default:
        this.#fail("expecting value");
        return undefined;
    }
  }

  #object(): JsonValue | undefined {
    this.#pos++;
    const dict = newJsonObject();
    let t = this.#peek();
    if (t === -1) return this.#fail("premature EOI"), undefined;
    if (t === T_RCURLY) {
      this.#pos++;
      return dict;
    }
    if (!this.#pair(dict)) return undefined;
    for (;;) {
      t = this.#peek();
      if (t === -1) return this.#fail("premature EOI"), undefined;
      this.#pos++;
      if (t === T_RCURLY) return dict;
      if (t !== T_COMMA) return this.#fail("expected separator in dict"), undefined;
      if (!this.#pair(dict)) return undefined;
    }
  }

  #pair(dict: Record<string, JsonValue>): boolean {
    if (this.#peek() === -1) return this.#fail("premature EOI"), false;
    const key = this.#value();
    if (typeof key !== "string") return this.#fail("key is not a string in object"), false;
    const t = this.#peek();
    if (t === -1) return this.#fail("premature EOI"), false;
    this.#pos++;
    if (t !== T_COLON) return this.#fail("missing : in object pair"), false;
    const value = this.#value();
    if (value === undefined) return this.#fail("Missing value in dict"), false;
    if (hasMember(dict, key)) return this.#fail("duplicate key"), false;
    dict[key] = value;
    return true;
  }

  #array(): JsonValue | undefined {
    this.#pos++;
    const list: JsonValue[] = [];
    let t = this.#peek();
    if (t === -1) return this.#fail("premature EOI"), undefined;
    if (t === T_RSQUARE) {
      this.#pos++;
      return list;
    }
    for (;;) {
      const v = this.#value();
      if (v === undefined) return this.#fail("expecting value"), undefined;
      list.push(v);
      t = this.#peek();
      if (t === -1) return this.#fail("premature EOI"), undefined;
      this.#pos++;
      if (t === T_RSQUARE) return list;
      if (t !== T_COMMA) return this.#fail("expected separator in list"), undefined;
    }
  }

  #literal(): JsonValue | undefined {
    const i = this.#pos++;
    const type = this.types[i];
    if (type === T_STRING) return this.#string(this.#start(i), this.ends[i]!);
    const text = this.#text(i);
    if (type === T_INTEGER) {
      const n = BigInt(text);
      if (n >= INT64_MIN && n <= INT64_MAX) {
        return n >= -(2n ** 53n) && n <= 2n ** 53n ? Number(n) : new QNum("int", n);
      }
      if (n >= 0n && n <= UINT64_MAX) return new QNum("uint", n);
    }
    return new QNum("double", Number(text));
  }

  #hex4(p: number, end: number): number {
    let cp = 0;
    for (let k = 0; k < 4; k++) {
      const c = p + k < end ? this.buf[p + k]! : 0;
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
      else return -1;
      cp = cp * 16 + d;
    }
    return cp;
  }

  #string(start: number, end: number): string | undefined {
    const b = this.buf;
    const quote = b[start]!;
    let p = start + 1;
    const parts: string[] = [];
    let plainFrom = p;
    while (b[p] !== quote) {
      const beg = p;
      const c = b[p]!;
      if (c === 0x5c) {
        if (plainFrom < beg) parts.push(decodeAscii(b, plainFrom, beg));
        p++;
        const e = b[p++]!;
        switch (e) {
          case 0x22:
            parts.push('"');
            break;
          case 0x27:
            parts.push("'");
            break;
          case 0x5c:
            parts.push("\\");
            break;
          case 0x2f:
            parts.push("/");
            break;
          case 0x62:
            parts.push("\b");
            break;
          case 0x66:
            parts.push("\f");
            break;
          case 0x6e:
            parts.push("\n");
            break;
          case 0x72:
            parts.push("\r");
            break;
          case 0x74:
            parts.push("\t");
            break;
          case 0x75: {
            let cp = this.#hex4(p, end);
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff && b[p] === 0x5c && b[p + 1] === 0x75) {
              cp = 0x10000 + ((cp & 0x3ff) << 10);
              const trailing = this.#hex4(p + 2, end);
              if (trailing >= 0xdc00 && trailing <= 0xdfff) {
                cp |= trailing & 0x3ff;
                p += 6;
              } else {
                cp = -1;
              }
            }
            if (!isValidCodePoint(cp)) {
              this.#fail(
                `${decodeLenient(b, beg, Math.min(p, end))} is not a valid Unicode character`,
              );
              return undefined;
            }
            parts.push(String.fromCodePoint(cp));
            break;
          }
          default:
            this.#fail("invalid escape sequence in string");
            return undefined;
        }
        plainFrom = p;
      } else if (c < 0x80) {
        p++;
      } else {
        if (plainFrom < beg) parts.push(decodeAscii(b, plainFrom, beg));
        const d = decodeCodePoint(b, p, end);
        if (d.cp < 0) {
          this.#fail("invalid UTF-8 sequence in string");
          return undefined;
        }
        parts.push(String.fromCodePoint(d.cp));
        p = d.end;
        plainFrom = p;
      }
    }
    if (plainFrom < p) parts.push(decodeAscii(b, plainFrom, p));
    return parts.join("");
  }
}

function decodeAscii(b: Uint8Array, from: number, to: number): string {
  let s = "";
  const CHUNK = 8192;
  for (let p = from; p < to; p += CHUNK) {
    s += String.fromCharCode(...b.subarray(p, Math.min(to, p + CHUNK)));
  }
  return s;
}
