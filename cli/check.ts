/**
 * `qedstream check`: the consistency check of a QED image, with the texts,
 * JSON and exit codes of `qemu-img check`.
 *
 * ```
 * qedstream check [-f FMT] [-r leaks|all] [--output human|json] FILE
 * ```
 *
 * Exit codes: 0 clean, 1 the check could not be done, 2 corruptions,
 * 3 leaks only, 63 the format has no check.
 *
 * @module
 */

import { FileStorage } from "../io/file_storage.ts";
import { type QedCheckResult, QedImage } from "../qed/image.ts";
import { probeFormat } from "../qed/open_file.ts";
import { imageFormat, lastValue, outputFormat, parseArgs } from "./args.ts";
import { CliError, describeError, openFailure } from "./error.ts";
import { CHECK_KEY_ORDER, orderKeys, qemuJson } from "./json.ts";
import type { CliOutput } from "./output.ts";

/** The counts `qemu-img check` reports. */
export interface CheckReport {
  /** The file name as given. */
  filename: string;
  /** Always `qed` (raw images have no check). */
  format: string;
  /** Clusters in the guest-visible size. */
  totalClusters: number;
  /** Data clusters referenced by L2 entries (invalid ones included). */
  allocatedClusters: number;
  /** Allocated clusters not contiguous with the previous one of their table. */
  fragmentedClusters: number;
  /** Corruptions still present. */
  corruptions: number;
  /** Leaked clusters still present. */
  leaks: number;
  /** I/O errors met during the check. */
  checkErrors: number;
  /** Corruptions repaired by `-r`. */
  corruptionsFixed: number;
  /** Leaks repaired by `-r` (QED never repairs leaks). */
  leaksFixed: number;
}

/** Turns the driver's result into the report for `filename`. */
export function checkReport(filename: string, r: QedCheckResult): CheckReport {
  return {
    filename,
    format: "qed",
    totalClusters: r.totalClusters,
    allocatedClusters: r.allocatedClusters,
    fragmentedClusters: r.fragmentedClusters,
    corruptions: r.corruptions,
    leaks: r.leaks,
    checkErrors: r.checkErrors,
    corruptionsFixed: r.corruptionsFixed,
    leaksFixed: r.leaksFixed,
  };
}

/** The exit code qemu-img check gives for a report. */
export function checkExitCode(report: CheckReport): number {
  if (report.checkErrors > 0) return 1;
  if (report.corruptions > 0) return 2;
  if (report.leaks > 0) return 3;
  return 0;
}

/**
 * The paragraph qemu-img prints after repairing, before it checks again.
 *
 * @example
 * ```ts
 * import { formatRepairHuman } from "./check.ts";
 * console.log(formatRepairHuman(0, 1));
 * ```
 */
export function formatRepairHuman(leaksFixed: number, corruptionsFixed: number): string {
  return "The following inconsistencies were found and repaired:\n\n" +
    `    ${leaksFixed} leaked clusters\n` +
    `    ${corruptionsFixed} corruptions\n\n` +
    "Double checking the fixed image now...\n";
}

/**
 * C's `%.2f`: like `toFixed(2)`, but an exact tie rounds to even as glibc
 * does (0.625 prints `0.62`, where `toFixed` gives `0.63`).
 */
export function formatFixed2(value: number): string {
  const exact = value.toFixed(25);
  const dot = exact.indexOf(".");
  if (/^50*$/.test(exact.slice(dot + 3))) {
    const down = exact.slice(0, dot + 3);
    const last = Number(exact[dot + 2]);
    return last % 2 === 0 ? down : (value + 0.005).toFixed(2);
  }
  return value.toFixed(2);
}

/**
 * qemu-img check's text for a report.
 *
 * @example
 * ```ts
 * import { formatCheckHuman } from "./check.ts";
 * console.log(formatCheckHuman({
 *   filename: "a.qed", format: "qed", totalClusters: 64, allocatedClusters: 1,
 *   fragmentedClusters: 0, corruptions: 0, leaks: 0, checkErrors: 0,
 *   corruptionsFixed: 0, leaksFixed: 0,
 * }));
 * // No errors were found on the image.
 * // 1/64 = 1.56% allocated, 0.00% fragmented, 0.00% compressed clusters
 * ```
 */
export function formatCheckHuman(r: CheckReport): string {
  let text = "";
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) {
    text += "No errors were found on the image.\n";
  } else {
    if (r.corruptions > 0) {
      text += `\n${r.corruptions} errors were found on the image.\n` +
        "Data may be corrupted, or further writes to the image may corrupt it.\n";
    }
    if (r.leaks > 0) {
      text += `\n${r.leaks} leaked clusters were found on the image.\n` +
        "This means waste of disk space, but no harm to data.\n";
    }
    if (r.checkErrors > 0) {
      text += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
    }
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    const pct = (n: number, d: number) => formatFixed2(n * 100 / d);
    text += `${r.allocatedClusters}/${r.totalClusters} = ` +
      `${pct(r.allocatedClusters, r.totalClusters)}% allocated, ` +
      `${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ` +
      `0.00% compressed clusters\n`;
  }
  return text;
}

/** The JSON object `qemu-img check --output json` prints: zero counts are left out, keys in qemu's order. */
export function checkJsonObject(r: CheckReport): Record<string, unknown> {
  const ifSet = (n: number) => (n !== 0 ? n : undefined);
  return orderKeys({
    "total-clusters": ifSet(r.totalClusters),
    "corruptions": ifSet(r.corruptions),
    "corruptions-fixed": ifSet(r.corruptionsFixed),
    "check-errors": r.checkErrors,
    "leaks": ifSet(r.leaks),
    "leaks-fixed": ifSet(r.leaksFixed),
    "allocated-clusters": ifSet(r.allocatedClusters),
    "filename": r.filename,
    "format": r.format,
    "fragmented-clusters": ifSet(r.fragmentedClusters),
  }, CHECK_KEY_ORDER);
}

/** Runs `check`. */
export async function checkCommand(argv: readonly string[], out: CliOutput): Promise<number> {
  const args = parseArgs(argv, { shortValues: "fr", longValues: ["output"], shortFlags: "q" });
  const output = outputFormat(args);
  const repairText = lastValue(args, "r");
  if (repairText !== undefined && repairText !== "leaks" && repairText !== "all") {
    throw new CliError(`Unknown option value for -r (expecting 'leaks' or 'all'): ${repairText}`);
  }
  const repair = repairText as "leaks" | "all" | undefined;
  const [file, extra] = args.operands;
  if (file === undefined) throw new CliError("Expecting one image file name");
  if (extra !== undefined) throw new CliError(`Unexpected argument: ${extra}`);
  const format = imageFormat(lastValue(args, "f"));

  // Opened directly, not through openImageFile: qemu-img check opens without the automatic
  // repair of a need-check image, so that the check itself finds and reports what it fixes.
  let storage: FileStorage;
  try {
    storage = await FileStorage.open(file, { readOnly: repair === undefined });
  } catch (e) {
    throw openFailure(file, e);
  }
  let image: QedImage;
  try {
    if ((format ?? await probeFormat(storage)) !== "qed") {
      throw new CliError("This image format does not support checks", { exitCode: 63 });
    }
    image = await QedImage.open(storage, {
      readOnly: repair === undefined,
      backing: null,
      repairOnOpen: false,
    });
  } catch (e) {
    await storage.close().catch(() => {});
    throw e instanceof CliError ? e : openFailure(file, e);
  }

  try {
    let report: CheckReport;
    try {
      let result = await image.check(repair ? { repair } : {});
      const leaksFixed = result.leaksFixed;
      const corruptionsFixed = result.corruptionsFixed;
      if (leaksFixed > 0 || corruptionsFixed > 0) {
        if (output === "human") out.stdout(formatRepairHuman(leaksFixed, corruptionsFixed));
        result = await image.check();
      }
      report = { ...checkReport(file, result), leaksFixed, corruptionsFixed };
    } catch (e) {
      throw new CliError(`Check failed: ${describeError(e)}`, { cause: e });
    }
    if (!args.flags.has("q")) {
      out.stdout(output === "json" ? qemuJson(checkJsonObject(report)) : formatCheckHuman(report));
    }
    if (report.checkErrors > 0) out.stderr("qedstream: Check failed\n");
    return checkExitCode(report);
  } finally {
    await image.close().catch(() => {});
  }
}
