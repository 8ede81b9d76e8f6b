/**
 * Reading qedstream's own side files for the verbs: checksum manifests and
 * working sets, with their decode errors turned into one CLI line.
 *
 * @module
 */

import { type ChecksumManifest, decodeManifest } from "../block/manifest.ts";
import { decodeWorkingSet, type WorkingSet } from "../block/working_set.ts";
import { CliError, describeError } from "./error.ts";

/** Most bytes a side file may have (a manifest of 4 Mi chunks is 128 MiB). */
const MAX_SIDE_FILE = 160 * 1024 * 1024;

async function readSideFile(path: string, what: string, exitCode: number): Promise<Uint8Array> {
  try {
    const stat = await Deno.stat(path);
    if (stat.size > MAX_SIDE_FILE) {
      throw new CliError(`${what} '${path}' is too large (${stat.size} bytes)`, { exitCode });
    }
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError(`Could not read ${what} '${path}': ${describeError(e)}`, {
      exitCode,
      cause: e,
    });
  }
}

/** Reads and decodes a checksum manifest file; any failure is a CLI error with `exitCode`. */
export async function loadManifestFile(path: string, exitCode = 1): Promise<ChecksumManifest> {
  const bytes = await readSideFile(path, "manifest", exitCode);
  try {
    return decodeManifest(bytes);
  } catch (e) {
    throw new CliError(`Manifest '${path}': ${describeError(e)}`, { exitCode, cause: e });
  }
}

/** Reads and decodes a working-set file; any failure is a CLI error. */
export async function loadWorkingSetFile(path: string): Promise<WorkingSet> {
  const bytes = await readSideFile(path, "working set", 1);
  try {
    return decodeWorkingSet(bytes);
  } catch (e) {
    throw new CliError(`Working set '${path}': ${describeError(e)}`, { cause: e });
  }
}
