/**
 * `qedstream compare`: whether two images have the same guest-visible
 * contents, like `qemu-img compare`.
 *
 * ```
 * qedstream compare [-f FMT] [-F FMT] [-s] [-q] A B
 * ```
 *
 * Exit codes: 0 identical, 1 different, 2 error (qemu-img uses 2 for open
 * failures and 4 for read failures; one error code is simpler to test for).
 *
 * @module
 */

import type { OpenedImage } from "../qed/open_file.ts";
import { imageFormat, lastValue, parseArgs } from "./args.ts";
import { CliError, describeError } from "./error.ts";
import { mapEntryAt } from "./map.ts";
import { type ChainLink, chainLinks, openImage } from "./open.ts";
import type { CliOutput } from "./output.ts";

/** How much is read at a time. */
const CHUNK = 1024 * 1024;

/** qemu-img compare reports the first differing 512-byte sector. */
const SECTOR = 512;

/** The outcome of comparing two images. */
export type CompareResult =
  | { kind: "identical"; sizeMismatch: boolean }
  | { kind: "mismatch"; offset: number; sizeMismatch: boolean }
  | { kind: "size-mismatch-strict" };

/** The length of the run at `offset` that surely reads as zeros (0 when it may hold data). */
async function zeroRun(
  links: readonly ChainLink[],
  offset: number,
  length: number,
): Promise<number> {
  const e = await mapEntryAt(links, { offset, length });
  return e.zero && !e.data ? e.length : 0;
}

/** The index of the first byte where `a` and `b` differ, or -1. */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** The index of the first non-zero byte of `a`, or -1. */
function firstNonZero(a: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) return i;
  return -1;
}

async function readAt(link: ChainLink, offset: number, buf: Uint8Array): Promise<void> {
  try {
    await link.opened.image.read(offset, buf);
  } catch (e) {
    throw new CliError(
      `Error while reading offset ${offset} of ${link.name}: ${describeError(e)}`,
      {
        exitCode: 2,
        cause: e,
      },
    );
  }
}

/**
 * Compares the contents of two opened images: the common length byte by
 * byte (ranges that read as zeros in both are skipped without reading), then
 * the tail of the longer one against zeros.
 */
export async function compareImages(
  a: readonly ChainLink[],
  b: readonly ChainLink[],
  options: { strict?: boolean } = {},
): Promise<CompareResult> {
  const sizeA = a[0]!.opened.image.size;
  const sizeB = b[0]!.opened.image.size;
  const sizeMismatch = sizeA !== sizeB;
  if (sizeMismatch && options.strict) return { kind: "size-mismatch-strict" };
  const common = Math.min(sizeA, sizeB);
  const bufA = new Uint8Array(CHUNK);
  const bufB = new Uint8Array(CHUNK);
  for (let offset = 0; offset < common;) {
    const want = Math.min(CHUNK, common - offset);
    const skip = Math.min(await zeroRun(a, offset, want), await zeroRun(b, offset, want));
    if (skip > 0) {
      offset += skip;
      continue;
    }
    const x = bufA.subarray(0, want);
    const y = bufB.subarray(0, want);
    await readAt(a[0]!, offset, x);
    await readAt(b[0]!, offset, y);
    const i = firstDifference(x, y);
    if (i >= 0) return { kind: "mismatch", offset: roundDown(offset + i), sizeMismatch };
    offset += want;
  }
  const longer = sizeA > sizeB ? a : b;
  const end = Math.max(sizeA, sizeB);
  for (let offset = common; offset < end;) {
    const want = Math.min(CHUNK, end - offset);
    const skip = await zeroRun(longer, offset, want);
    if (skip > 0) {
      offset += skip;
      continue;
    }
    const x = bufA.subarray(0, want);
    await readAt(longer[0]!, offset, x);
    const i = firstNonZero(x);
    if (i >= 0) return { kind: "mismatch", offset: roundDown(offset + i), sizeMismatch };
    offset += want;
  }
  return { kind: "identical", sizeMismatch };
}

function roundDown(offset: number): number {
  return offset - (offset % SECTOR);
}

/**
 * The lines qemu-img compare prints for a result.
 *
 * @example
 * ```ts
 * import { formatCompareResult } from "./compare.ts";
 * console.log(formatCompareResult({ kind: "mismatch", offset: 512, sizeMismatch: false }));
 * // Content mismatch at offset 512!
 * ```
 */
export function formatCompareResult(result: CompareResult): string {
  if (result.kind === "size-mismatch-strict") return "Strict mode: Image size mismatch!\n";
  const warning = result.sizeMismatch ? "Warning: Image size mismatch!\n" : "";
  if (result.kind === "identical") return warning + "Images are identical.\n";
  return warning + `Content mismatch at offset ${result.offset}!\n`;
}

/** Runs `compare`. */
export async function compareCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  let args;
  try {
    args = parseArgs(argv, { shortValues: "fF", shortFlags: "sq" });
  } catch (e) {
    throw e instanceof CliError ? new CliError(e.message, { exitCode: 2 }) : e;
  }
  const [fileA, fileB, extra] = args.operands;
  if (fileA === undefined || fileB === undefined) {
    throw new CliError("Expecting two image file names", { exitCode: 2 });
  }
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`, { exitCode: 2 });
  const open = async (file: string, fmt: string | undefined): Promise<OpenedImage> => {
    try {
      return await openImage(file, { format: imageFormat(fmt) });
    } catch (e) {
      throw e instanceof CliError ? new CliError(e.message, { exitCode: 2, cause: e }) : e;
    }
  };
  const a = await open(fileA, lastValue(args, "f"));
  try {
    const b = await open(fileB, lastValue(args, "F") ?? lastValue(args, "f"));
    try {
      const result = await compareImages(chainLinks(a, fileA), chainLinks(b, fileB), {
        strict: args.flags.has("s"),
      });
      if (!args.flags.has("q")) out.stdout(formatCompareResult(result));
      return result.kind === "identical" ? 0 : 1;
    } finally {
      await b.close();
    }
  } finally {
    await a.close();
  }
}
