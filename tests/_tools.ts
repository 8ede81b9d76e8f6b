/**
 * Helpers for tests that run real programs (qemu-img, qemu-io,
 * qemu-storage-daemon, nbdkit): find them, run them, and make temporary
 * folders that are removed afterwards.
 *
 * Where a program is missing the test is skipped with a visible message,
 * except in CI (`CI=true`), where a missing program is a failure.
 *
 * @module
 */

import { spawnSync } from "node:child_process";

const found = new Map<string, boolean>();

/** Whether `program` is on the PATH. */
export function has(program: string): boolean {
  let yes = found.get(program);
  if (yes === undefined) {
    yes = spawnSync("sh", ["-c", `command -v ${program}`]).status === 0;
    found.set(program, yes);
  }
  return yes;
}

/**
 * `true` when every program is installed. Otherwise prints which are missing
 * and returns `false` (so the caller can use `ignore:`), or throws in CI.
 */
export function programsPresent(...programs: string[]): boolean {
  const missing = programs.filter((p) => !has(p));
  if (missing.length === 0) return true;
  const message = `interop tests need ${missing.join(", ")}: not installed`;
  if (Deno.env.get("CI")) throw new Error(`${message} (CI must run them; see .ci/run)`);
  console.warn(`SKIP: ${message}; skipping`);
  return false;
}

/** What a finished program printed and how it exited. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion and returns its output. */
export async function run(program: string, args: string[], cwd?: string): Promise<RunResult> {
  const out = await new Deno.Command(program, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...(cwd ? { cwd } : {}),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs a program and throws with its stderr if it exits non-zero. */
export async function runOk(program: string, args: string[], cwd?: string): Promise<string> {
  const r = await run(program, args, cwd);
  if (r.code !== 0) {
    throw new Error(`${program} ${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/** A temporary folder removed by `await using`. */
export async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "qedstream-test-" });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** The fixed seed of property tests plus a random one, printed so a failure can be rerun. */
export function seeds(): number[] {
  const fixed = 20261125;
  const env = Deno.env.get("QEDSTREAM_SEED");
  const random = env ? Number(env) : (Math.random() * 2 ** 31) | 0;
  console.log(
    `property seeds: fixed ${fixed}, random ${random} (rerun with QEDSTREAM_SEED=${random})`,
  );
  return [fixed, random];
}
