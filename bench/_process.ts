/**
 * Runs a program for a benchmark and measures its wall time and peak
 * resident memory: with `/usr/bin/time -f %M` when it is installed, else by
 * polling `VmHWM` in `/proc/PID/status`.
 *
 * @module
 */

/** A finished, measured process. */
export interface MeasuredRun {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error (without the measurement line). */
  stderr: string;
  /** Wall time from spawn to exit, in ms. */
  wallMs: number;
  /** Peak resident set size in KiB, or `null` when it could not be measured. */
  peakRssKiB: number | null;
}

const TIME = "/usr/bin/time";
const MARK = "QEDSTREAM_BENCH_MAXRSS_KIB=";

async function hasTime(): Promise<boolean> {
  try {
    return (await Deno.stat(TIME)).isFile;
  } catch {
    return false;
  }
}

async function vmHwm(pid: number): Promise<number | null> {
  try {
    const text = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /^VmHWM:\s*(\d+)\s*kB/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Runs `program args` in `cwd`, measuring time and peak memory. */
export async function measuredRun(
  program: string,
  args: string[],
  cwd: string,
): Promise<MeasuredRun> {
  const viaTime = await hasTime();
  const cmd = viaTime
    ? new Deno.Command(TIME, {
      args: ["-f", `${MARK}%M`, program, ...args],
      cwd,
      stdout: "piped",
      stderr: "piped",
    })
    : new Deno.Command(program, { args, cwd, stdout: "piped", stderr: "piped" });
  const start = performance.now();
  const child = cmd.spawn();
  let peak: number | null = null;
  let polling = !viaTime;
  const poll = (async () => {
    while (polling) {
      const hwm = await vmHwm(child.pid);
      if (hwm !== null) peak = Math.max(peak ?? 0, hwm);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const out = await child.output();
  const wallMs = performance.now() - start;
  polling = false;
  await poll;
  let stderr = new TextDecoder().decode(out.stderr);
  if (viaTime) {
    const m = new RegExp(`${MARK}(\\d+)\\n?$`).exec(stderr);
    if (m) {
      peak = Number(m[1]);
      stderr = stderr.slice(0, m.index);
    }
  }
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr,
    wallMs,
    peakRssKiB: peak,
  };
}

/** Runs a program to completion; throws with its stderr when it exits non-zero. */
export async function runOk(program: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(program, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...(cwd ? { cwd } : {}),
  }).output();
  const dec = new TextDecoder();
  if (out.code !== 0) {
    throw new Error(`${program} ${args.join(" ")} exited ${out.code}: ${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout);
}
