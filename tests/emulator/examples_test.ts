/**
 * The programs in examples/ run as a user would run them: each as its own
 * `deno run` / `deno test` process, from the project root, importing the
 * package by its name.
 */
import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { startEmulator } from "../../mod.ts";
import { tempDir } from "../_tools.ts";

const root = resolve(dirname(new URL(import.meta.url).pathname), "../..");

async function deno(...args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), { args, cwd: root }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `deno ${args.join(" ")} exited ${out.code}:\n${text}`);
  return text;
}

Deno.test("examples/provision.ts streams a disk to independence on its own emulator", async () => {
  const out = await deno("run", "-A", "examples/provision.ts");
  assert.match(out, /vm1: streamed 268435456 bytes in [\d.]+ virtual s, \d+ progress reports/);
  assert.match(out, /now independent/);
  assert.match(out, /image check: 0 corruptions, 0 leaks/);
});

Deno.test("examples/provision.ts drives a machine over its QMP socket", async () => {
  await using dir = await tempDir();
  const path = join(dir.path, "qmp.sock");
  await using emu = await startEmulator({
    drives: [{ name: "disk0", template: { type: "sparse", template: { size: 8 << 20 } } }],
    monitors: [{ type: "unix", path }],
  });
  const out = await deno("run", "-A", "examples/provision.ts", path, "disk0");
  assert.match(out, /disk0: streamed 8388608 bytes, now independent/);
  assert.equal(emu.drive("disk0").independent, true);
});

Deno.test("examples/paced_stream.ts paces single-step streaming to completion", async () => {
  const out = await deno("run", "-A", "examples/paced_stream.ts");
  assert.match(out, /vm1: \d+ pieces in [\d.]+ virtual s \(\d+ back-offs\)/);
  assert.match(out, /completed at 33554432\/33554432, independent: true/);
});

Deno.test("examples/on_error_stop_test.ts passes", async () => {
  const out = await deno("test", "-A", "examples/on_error_stop_test.ts");
  assert.match(out, /2 passed \| 0 failed/);
});
