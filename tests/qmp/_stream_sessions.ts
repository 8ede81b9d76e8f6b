/**
 * The machinery of the streaming conformance suite: images made by qemu-img
 * and qemu-io, the same `--blockdev` options given to a real
 * qemu-storage-daemon and to our server (built in-process by
 * `daemon/graph_builder.ts` from `parseDaemonArgs`), one scripted QMP
 * session run against both, and the normalisation that makes their outputs
 * comparable: timestamps, versions, automatic node names and paths.
 *
 * The two sides use folders whose paths have the same length (`…/q`, `…/o`),
 * so the absolute backing names qemu-img writes into the headers, and thus
 * the headers, can be compared byte for byte.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseDaemonArgs } from "../../daemon/args.ts";
import { Daemon } from "../../daemon/daemon.ts";
import { runOk } from "../_tools.ts";
import { normalise, RawConnection } from "./_harness.ts";

/** One step of a scripted session. */
export type Step =
  /** Send a command, read up to and including its reply (events on the way are kept). */
  | { send: Record<string, unknown>; blur?: string[] }
  /** Read until this event (a `JOB_STATUS_CHANGE` with `status`, if given). */
  | { wait: string; status?: string; blur?: string[] }
  /** Pause the script. */
  | { sleep: number };

/** What a session produced on one server. */
export interface SessionResult {
  /** Normalised lines, with blurred members, in arrival order. */
  lines: string[];
  /** The raw lines (for checks on values the comparison blurs). */
  raw: string[];
}

/** Replaces `$DIR`, automatic node names, timestamps and versions. */
export function normaliseLine(line: string, dir: string, blur: string[] = []): string {
  let out = normalise(line).split(dir).join("$DIR").replace(/#block\d+/g, "#block");
  for (const member of blur) {
    out = out.replace(
      new RegExp(`"${member}": (-?\\d+|true|false|"[^"]*")`, "g"),
      `"${member}": ~`,
    );
  }
  return out;
}

/** Runs `steps` on a fresh connection to `path`; `dir` is replaced by `$DIR`. */
export async function runSession(path: string, dir: string, steps: Step[]): Promise<SessionResult> {
  const conn = await RawConnection.open(path);
  const lines: string[] = [];
  const raw: string[] = [];
  const take = (l: string, blur?: string[]) => {
    raw.push(l);
    lines.push(normaliseLine(l, dir, blur));
  };
  try {
    take((await conn.line())!);
    for (const step of steps) {
      if ("sleep" in step) {
        await new Promise((r) => setTimeout(r, step.sleep));
        continue;
      }
      if ("send" in step) {
        const text = JSON.stringify(step.send).split("$DIR").join(dir);
        await conn.send(text + "\n");
        lines.push("-> " + JSON.stringify(step.send));
      }
      for (;;) {
        const l = await conn.line(30000);
        if (l === null) {
          throw new Error(`${path}: no answer at ${JSON.stringify(step)}; got ${lines.join("\n")}`);
        }
        take(l, step.blur);
        const msg = JSON.parse(l);
        if ("send" in step && ("return" in msg || "error" in msg)) break;
        if (
          "wait" in step && msg.event === step.wait &&
          (step.status === undefined || msg.data?.status === step.status)
        ) break;
      }
    }
    return { lines, raw };
  } finally {
    conn.close();
  }
}

/** A server under test, stopped (images flushed and closed) by `stop()`. */
export interface Side {
  /** The QMP socket. */
  path: string;
  /** The image folder. */
  dir: string;
  /** Stops the server; idempotent. */
  stop(): Promise<void>;
}

/** Starts qemu-storage-daemon with `blockdevs` (`$DIR` replaced) and one monitor. */
export async function startQsdSide(dir: string, blockdevs: string[]): Promise<Side> {
  const path = `${dir}/qsd.sock`;
  const args = [
    ...blockdevs.flatMap((b) => ["--blockdev", b.split("$DIR").join(dir)]),
    "--chardev",
    `socket,id=m0,path=${path},server=on,wait=off`,
    "--monitor",
    "chardev=m0",
  ];
  const child = new Deno.Command("qemu-storage-daemon", { args, stdout: "null", stderr: "piped" })
    .spawn();
  let exited = false;
  const status = child.status.then((s) => (exited = true, s));
  const stderr = new Response(child.stderr).text();
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      (await Deno.connect({ transport: "unix", path })).close();
      break;
    } catch (e) {
      if (exited) throw new Error(`qemu-storage-daemon exited: ${await stderr}`);
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        await status;
        throw e;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  let stopped = false;
  return {
    path,
    dir,
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        child.kill("SIGTERM");
      } catch { /* exited already */ }
      await status;
      await stderr;
    },
  };
}

/**
 * Starts our daemon in-process (`daemon/daemon.ts`, what `qedstream serve`
 * runs) with qemu-storage-daemon's own command line: the same `--blockdev`
 * options (`$DIR` replaced), a `--chardev` socket and a `--monitor`.
 */
export async function startOurSide(dir: string, blockdevs: string[]): Promise<Side> {
  const path = `${dir}/ours.sock`;
  const daemon = await Daemon.start(parseDaemonArgs([
    ...blockdevs.flatMap((b) => ["--blockdev", b.split("$DIR").join(dir)]),
    "--chardev",
    `socket,id=m0,path=${path},server=on,wait=off`,
    "--monitor",
    "chardev=m0",
  ]));
  return { path, dir, stop: () => daemon.close() };
}

/**
 * The standard images in `dir` (after the transcripts' recipe, at 8 MiB):
 * `base.raw` with `0xaa` in [0, 2M) and `0xbb` in [4M, 5M); `ov.qed` over it
 * (`-F raw`, absolute backing name) with `0xcc` in [1M, 1.5M); `ov2.qed`
 * the same with `0xdd` in [6M, 6.5M).
 */
export async function makeImages(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await runOk("qemu-img", ["create", "-q", "-f", "raw", `${dir}/base.raw`, "8M"]);
  await runOk("qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -P 0xaa 0 2M",
    "-c",
    "write -P 0xbb 4M 1M",
    `${dir}/base.raw`,
  ]);
  for (const [name, pattern, at] of [["ov", "0xcc", "1M"], ["ov2", "0xdd", "6M"]]) {
    await runOk("qemu-img", [
      "create",
      "-q",
      "-f",
      "qed",
      "-b",
      `${dir}/base.raw`,
      "-F",
      "raw",
      `${dir}/${name}.qed`,
    ]);
    await runOk("qemu-io", [
      "-f",
      "qed",
      "-c",
      `write -P ${pattern} ${at} 512k`,
      `${dir}/${name}.qed`,
    ]);
  }
}

/**
 * A three-image chain in `dir`: `base.raw` (16 MiB, `0xaa` in [0, 4M)) ←
 * `mid.qed` (`0xbb` in [4M, 8M)) ← `top.qed` (`0xcc` in [8M, 9M)).
 */
export async function makeChain(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await runOk("qemu-img", ["create", "-q", "-f", "raw", `${dir}/base.raw`, "16M"]);
  await runOk("qemu-io", ["-f", "raw", "-c", "write -P 0xaa 0 4M", `${dir}/base.raw`]);
  await runOk("qemu-img", [
    "create",
    "-q",
    "-f",
    "qed",
    "-b",
    `${dir}/base.raw`,
    "-F",
    "raw",
    `${dir}/mid.qed`,
  ]);
  await runOk("qemu-io", ["-f", "qed", "-c", "write -P 0xbb 4M 4M", `${dir}/mid.qed`]);
  await runOk("qemu-img", [
    "create",
    "-q",
    "-f",
    "qed",
    "-b",
    `${dir}/mid.qed`,
    "-F",
    "qed",
    `${dir}/top.qed`,
  ]);
  await runOk("qemu-io", ["-f", "qed", "-c", "write -P 0xcc 8M 1M", `${dir}/top.qed`]);
}

/** Asserts two transcripts are identical, showing the first difference with context. */
export function assertSameSession(qemu: SessionResult, ours: SessionResult): void {
  const n = Math.max(qemu.lines.length, ours.lines.length);
  for (let i = 0; i < n; i++) {
    if (qemu.lines[i] !== ours.lines[i]) {
      const context = qemu.lines.slice(Math.max(0, i - 3), i).join("\n  ");
      assert.fail(
        `first difference at line ${i}:\n  …\n  ${context}\nqemu: ${qemu.lines[i]}\nours: ${
          ours.lines[i]
        }\n(qemu has ${qemu.lines.length} lines, ours ${ours.lines.length})`,
      );
    }
  }
}

/** Asserts that images `name` of both sides hold the same data (`qemu-img compare`) and the same 64-byte header. */
export async function assertSameImage(
  qemuDir: string,
  ourDir: string,
  name: string,
): Promise<void> {
  await runOk("qemu-img", ["compare", "-U", `${qemuDir}/${name}`, `${ourDir}/${name}`]);
  const a = (await Deno.readFile(`${qemuDir}/${name}`)).subarray(0, 64);
  const b = (await Deno.readFile(`${ourDir}/${name}`)).subarray(0, 64);
  assert.deepEqual([...b], [...a], `${name}: headers differ`);
  const info = async (d: string) =>
    (await runOk("qemu-img", ["info", "-U", `${d}/${name}`]))
      .split("\n").filter((l) => /backing/.test(l)).join("\n").split(d).join("$DIR");
  assert.equal(await info(ourDir), await info(qemuDir), `${name}: backing differs`);
}
