/**
 * `qedstream stream` end to end: overlays made by qemu-img, streamed by the
 * command as a separate process, checked by qemu-img.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { parseStreamArgs, runStream } from "../../cli/stream.ts";
import { BufferedOutput } from "../../cli/output.ts";
import { formatProgressBar, progressLine, RateMeter } from "../../cli/progress.ts";
import { programsPresent, run, runOk, tempDir } from "../_tools.ts";
import { CLI_PATH, qedstream } from "./_cli.ts";

const interop = !programsPresent("qemu-img", "qemu-io");

/** A 16 MiB raw base with data at [0, 6M) and [10M, 12M), and a QED overlay made by qemu-img. */
async function overlay(dir: string) {
  const base = join(dir, "base.raw");
  const ov = join(dir, "ov.qed");
  const expected = join(dir, "expected.raw");
  await runOk("qemu-img", ["create", "-q", "-f", "raw", base, "16M"]);
  await runOk("qemu-io", [
    "-f",
    "raw",
    "-c",
    "write -P 0xa1 0 6M",
    "-c",
    "write -P 0xb2 10M 2M",
    base,
  ]);
  await runOk("qemu-img", ["create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", ov], dir);
  return { base, ov, expected };
}

/** Guest writes through `qedstream io`, mirrored into the expected raw image. */
async function guestWrites(dir: string, ov: string, base: string, expected: string) {
  const cmds = ["write -P 0xcc 1M 64k", "write -P 0xdd 5M 1536k", "write -z 10M 64k"];
  const io = await qedstream(["io", ov, ...cmds.flatMap((c) => ["-c", c])], dir);
  assert.equal(io.code, 0, io.stderr);
  await Deno.copyFile(base, expected);
  await runOk("qemu-io", ["-f", "raw", ...cmds.flatMap((c) => ["-c", c]), expected]);
}

async function assertIndependent(ov: string, expected: string) {
  const info = await runOk("qemu-img", ["info", ov]);
  assert.doesNotMatch(info, /backing file/i, info);
  await assertClean(ov);
  await assertSame(ov, expected);
}

async function assertClean(ov: string) {
  const check = await run("qemu-img", ["check", ov]);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout, /No errors were found on the image/);
}

async function assertSame(ov: string, expected: string) {
  const cmp = await run("qemu-img", ["compare", "-f", "qed", "-F", "raw", ov, expected]);
  assert.equal(cmp.code, 0, cmp.stdout + cmp.stderr);
  assert.match(cmp.stdout, /Images are identical/);
}

Deno.test({
  name: "qedstream stream makes a qemu-img overlay with guest writes independent",
  ignore: interop,
  async fn() {
    await using dir = await tempDir();
    const { base, ov, expected } = await overlay(dir.path);
    await guestWrites(dir.path, ov, base, expected);
    const r = await qedstream(["stream", "--chunk", "256k", "--parallel", "4", "ov.qed"], dir.path);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "");
    assert.match(
      r.stdout,
      /^Stream completed: 16 MiB in \d+\.\d s \([0-9.]+ [KMG]iB\/s\); 'ov\.qed' no longer has a backing file\n$/,
    );
    await assertIndependent(ov, expected);
    // A stream of an independent image has nothing to do.
    const again = await qedstream(["stream", "ov.qed"], dir.path);
    assert.equal(again.code, 0, again.stderr);
  },
});

Deno.test({
  name: "qedstream stream --base streams a 3-level chain down to the base only",
  ignore: interop,
  async fn() {
    await using dir = await tempDir();
    const { base } = await overlay(dir.path);
    const mid = join(dir.path, "mid.qed");
    const top = join(dir.path, "top.qed");
    await runOk(
      "qemu-img",
      ["create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", mid],
      dir.path,
    );
    await runOk("qemu-io", ["-f", "qed", "-c", "write -P 0x33 2M 3M", mid]);
    await runOk(
      "qemu-img",
      ["create", "-q", "-f", "qed", "-b", "mid.qed", "-F", "qed", top],
      dir.path,
    );
    await runOk("qemu-io", ["-f", "qed", "-c", "write -P 0x44 4M 64k", top]);
    const before = join(dir.path, "before.raw");
    await runOk("qemu-img", ["convert", "-O", "raw", top, before]);

    const r = await qedstream(
      ["stream", "--base", "base.raw", "--output", "json", "top.qed"],
      dir.path,
    );
    assert.equal(r.code, 0, r.stderr);
    const last = JSON.parse(r.stdout.trim().split("\n").at(-1)!);
    assert.equal(last.event, "completed");
    assert.equal(last.backing, "base.raw");

    const info = JSON.parse(await runOk("qemu-img", ["info", "--output", "json", top]));
    assert.equal(info["backing-filename"], "base.raw");
    assert.equal(info["backing-filename-format"], "raw");
    await assertClean(top);
    await assertSame(top, before);
    // Only mid's data was copied: what the base holds alone stays unallocated in the top.
    const map = JSON.parse(await runOk("qemu-img", ["map", "--output", "json", top]));
    const at0 = map.find((e: { start: number }) => e.start === 0);
    assert.equal(at0.depth, 1, JSON.stringify(map));

    // An unknown base: one line, exit 1.
    const bad = await qedstream(["stream", "--base", "nope.raw", "top.qed"], dir.path);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, "qedstream: Can't find 'nope.raw' in the backing chain\n");
    assert.ok(base);
  },
});

Deno.test({
  name: "qedstream stream --output json writes parseable start, progress and end lines",
  ignore: interop,
  async fn() {
    await using dir = await tempDir();
    const { base, ov, expected } = await overlay(dir.path);
    await Deno.copyFile(base, expected);
    const r = await qedstream(["stream", "--speed", "16M", "--output", "json", "ov.qed"], dir.path);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines[0].event, "start");
    assert.equal(lines[0].len, 16 << 20);
    assert.equal(lines[0].speed, 16 << 20);
    assert.equal(lines[0].chunk, 2 << 20);
    assert.equal(lines[0].parallel, 4);
    const progress = lines.filter((l) => l.event === "progress");
    assert.ok(progress.length >= 1, r.stdout);
    for (const p of progress) {
      assert.deepEqual(Object.keys(p), ["event", "offset", "len", "rate", "eta", "elapsed"]);
      assert.ok(p.offset <= p.len && p.rate >= 0 && p.elapsed > 0);
    }
    const end = lines.at(-1);
    assert.equal(end.event, "completed");
    assert.equal(end.offset, end.len);
    assert.equal(end.backing, null);
    await assertIndependent(ov, expected);
  },
});

Deno.test({
  name: "qedstream stream: SIGINT cancels consistently (exit 130) and a rerun completes",
  ignore: interop,
  async fn() {
    await using dir = await tempDir();
    const { base, ov, expected } = await overlay(dir.path);
    await Deno.copyFile(base, expected);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        CLI_PATH,
        "stream",
        "--speed",
        "4M",
        "--output",
        "json",
        "ov.qed",
      ],
      cwd: dir.path,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Wait for the first progress line, so the job is running when the signal comes.
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes('"progress"')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    child.kill("SIGINT");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    const status = await child.status;
    const stderr = new TextDecoder().decode(
      await new Response(child.stderr).arrayBuffer(),
    );
    assert.equal(status.code, 130, stderr);
    assert.match(
      stderr,
      /^qedstream: Stream cancelled at \d+\.\d% \(.+ of 16 MiB\); 'ov\.qed' is consistent and still backed by 'base\.raw', and a rerun continues\n$/,
    );
    const end = JSON.parse(text.trim().split("\n").at(-1)!);
    assert.equal(end.event, "cancelled");
    assert.ok(end.offset > 0 && end.offset < end.len, text);

    const info = await runOk("qemu-img", ["info", ov]);
    assert.match(info, /backing file: base\.raw/);
    await assertClean(ov);
    await assertSame(ov, expected);

    const rerun = await qedstream(["stream", "--output", "json", "ov.qed"], dir.path);
    assert.equal(rerun.code, 0, rerun.stderr);
    await assertIndependent(ov, expected);
  },
});

Deno.test({
  name: "runStream() draws a progress bar on a terminal and cancels on an aborted signal",
  ignore: interop,
  async fn() {
    await using dir = await tempDir();
    const { base, ov, expected } = await overlay(dir.path);
    await Deno.copyFile(base, expected);
    const out = new BufferedOutput();
    const abort = new AbortController();
    const options = { ...parseStreamArgs(["--speed", "8M", ov]) };
    const done = runStream(options, out, { signal: abort.signal, terminal: true });
    await new Promise((r) => setTimeout(r, 400));
    abort.abort();
    assert.equal(await done, 130);
    assert.match(out.err, /\r\[[#-]{30}\] +\d+\.\d% {2}.+ \/ 16 MiB {2}.+\/s {2}ETA /);
    assert.match(out.err, /Stream cancelled at/);
    await assertClean(ov);
    await assertSame(ov, expected);
  },
});

Deno.test("parseStreamArgs() reads qemu sizes and refuses bad values in one line", () => {
  assert.deepEqual(
    parseStreamArgs([
      "--speed",
      "1.5M",
      "--chunk=64k",
      "--parallel",
      "2",
      "--on-error",
      "stop",
      "x",
    ]),
    {
      file: "x",
      speed: 1572864,
      chunkSize: 65536,
      parallel: 2,
      onError: "stop",
      output: "human",
    },
  );
  assert.throws(() => parseStreamArgs([]), /Expecting one image file name/);
  assert.throws(() => parseStreamArgs(["--speed", "fast", "x"]), /Invalid --speed value 'fast'/);
  assert.throws(() => parseStreamArgs(["--chunk", "1000", "x"]), /multiple of 512/);
  assert.throws(() => parseStreamArgs(["--parallel", "0", "x"]), /expected 1 to 1024/);
  assert.throws(() => parseStreamArgs(["--on-error", "retry", "x"]), /Invalid --on-error/);
  assert.throws(() => parseStreamArgs(["--output", "xml", "x"]), /--output must be used/);
});

Deno.test("progress: rate over a window, bar and JSON line", () => {
  const meter = new RateMeter({ at: 0, done: 0 });
  meter.add({ at: 1000, done: 1 << 20 });
  meter.add({ at: 5000, done: 9 << 20 });
  assert.equal(meter.rate(), 2 << 20); // the window keeps [1000, 5000]
  const state = { done: 1 << 20, total: 4 << 20, rate: 1 << 20, elapsedMs: 1500 };
  assert.equal(
    formatProgressBar(state, 8),
    "[##------]  25.0%  1 MiB / 4 MiB  1 MiB/s  ETA 0:03",
  );
  assert.deepEqual(progressLine(state), {
    event: "progress",
    offset: 1 << 20,
    len: 4 << 20,
    rate: 1 << 20,
    eta: 3,
    elapsed: 1.5,
  });
});

Deno.test({
  name: "qedstream stream reports a missing file in one line",
  async fn() {
    await using dir = await tempDir();
    const r = await qedstream(["stream", "missing.qed"], dir.path);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "qedstream: Could not open 'missing.qed': No such file or directory\n");
  },
});
