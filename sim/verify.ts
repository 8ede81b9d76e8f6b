/**
 * The final check of a provisioned machine's image: consistent metadata, no
 * backing file, and every byte equal to the template plus the guest's writes.
 *
 * @module
 */

import type { QedImage } from "../qed/image.ts";
import type { Extent, SparseTemplate } from "./sparse_template.ts";
import type { WriteModel } from "./write_model.ts";

/** What {@linkcode verifyImage} found. */
export interface VerifyResult {
  /** Everything below is as it should be. */
  ok: boolean;
  /** The image no longer names a backing file and reads nothing from one. */
  independent: boolean;
  /** `check()` found no corruption and no check error. */
  checkClean: boolean;
  /** Corruptions, leaks and check errors reported by `check()`. */
  check: { corruptions: number; leaks: number; checkErrors: number };
  /** Bytes compared with the expected content. */
  bytesCompared: number;
  /** The first differing byte, when one was found. */
  firstMismatch?: number;
  /** A sentence per problem. */
  problems: string[];
}

/** Options of {@linkcode verifyImage}. */
export interface VerifyOptions {
  /** Whether the image must have no backing file. Default true. */
  expectIndependent?: boolean;
  /** Bytes read per comparison. Default 4 MiB. */
  chunkSize?: number;
}

function union(lists: Extent[][]): Extent[] {
  const all = lists.flat().filter((e) => e.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Extent[] = [];
  for (const e of all) {
    const last = out[out.length - 1];
    if (last && e.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, e.offset + e.length - last.offset);
    } else {
      out.push({ ...e });
    }
  }
  return out;
}

/**
 * Verifies `image` against `template` overlaid with `writes`. Only the
 * ranges where either side can hold non-zero bytes are read: the template's
 * data, the guest's writes and the image's data clusters; everywhere else
 * both read as zeros by construction.
 *
 * @example
 * ```ts ignore
 * const result = await verifyImage(image, template, guest.model);
 * if (!result.ok) console.error(result.problems.join("\n"));
 * ```
 */
export async function verifyImage(
  image: QedImage,
  template: SparseTemplate,
  writes: WriteModel,
  options: VerifyOptions = {},
): Promise<VerifyResult> {
  const problems: string[] = [];
  const expectIndependent = options.expectIndependent ?? true;
  const independent = image.backingFile === undefined && image.backing === null;
  if (expectIndependent && !independent) {
    problems.push(`image still has a backing file (${image.backingFile ?? "attached"})`);
  }
  const c = await image.check();
  const check = { corruptions: c.corruptions, leaks: c.leaks, checkErrors: c.checkErrors };
  const checkClean = c.corruptions === 0 && c.checkErrors === 0;
  if (!checkClean) {
    problems.push(`check: ${c.corruptions} corruptions, ${c.checkErrors} check errors`);
  }
  const ranges = independent
    ? union([
      [...template.extents],
      writes.ranges(),
      (await image.map()).filter((e) => e.kind === "data"),
    ])
    : [];
  const chunk = options.chunkSize ?? 4 * 1024 * 1024;
  const got = new Uint8Array(chunk);
  const want = new Uint8Array(chunk);
  let bytesCompared = 0;
  let firstMismatch: number | undefined;
  outer: for (const r of ranges) {
    for (let done = 0; done < r.length; done += chunk) {
      const n = Math.min(chunk, r.length - done);
      const at = r.offset + done;
      const g = got.subarray(0, n);
      const w = want.subarray(0, n);
      await image.read(at, g);
      template.readSync(at, w);
      writes.overlay(at, w);
      bytesCompared += n;
      if (!sameBytes(g, w)) {
        let i = 0;
        while (g[i] === w[i]) i++;
        firstMismatch = at + i;
        problems.push(`byte at offset ${at + i} differs from the template plus the guest's writes`);
        break outer;
      }
    }
  }
  const result: VerifyResult = {
    ok: problems.length === 0,
    independent,
    checkClean,
    check,
    bytesCompared,
    problems,
  };
  if (firstMismatch !== undefined) result.firstMismatch = firstMismatch;
  return result;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  const n = a.length >>> 2;
  const wa = new Uint32Array(a.buffer, a.byteOffset, n);
  const wb = new Uint32Array(b.buffer, b.byteOffset, n);
  for (let i = 0; i < n; i++) if (wa[i] !== wb[i]) return false;
  for (let i = n * 4; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
