import assert from "node:assert/strict";
import { parseDemoOptions } from "../../cli/demo_options.ts";
import { NBDKIT_MISSING } from "../../cli/demo_real.ts";
import { programsPresent, tempDir } from "../_tools.ts";
import { CLI_PATH, qedstream } from "./_cli.ts";

Deno.test("parseDemoOptions() takes --real, on the system clock and scaled down", () => {
  const o = parseDemoOptions(["--real"]);
  assert.equal(o.real, true);
  assert.equal(o.realTime, true);
  assert.equal(o.comparison.template?.size, 256 * 1024 * 1024);
  assert.equal(parseDemoOptions([]).real, false);
});

Deno.test("`demo --real` without nbdkit says so in one line and exits 2", async () => {
  await using dir = await tempDir();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", CLI_PATH, "demo", "--real"],
    cwd: dir.path,
    env: { PATH: dir.path },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 2, stderr);
  assert.equal(stderr.trim().split("\n").length, 1, stderr);
  assert.match(stderr, /nbdkit is not installed/);
  assert.ok(stderr.includes(NBDKIT_MISSING));
});

Deno.test({
  name: "`demo --real` streams option 3 from an nbdkit repository it starts and stops itself",
  ignore: !programsPresent("nbdkit"),
  async fn() {
    await using dir = await tempDir();
    const r = await qedstream(
      ["demo", "--real", "--size", "32M", "--duration", "500ms", "--rtt", "5"],
      dir.path,
    );
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stderr, /nbdkit --filter=rate --filter=delay file .* rdelay=5ms on nbd\+unix:/);
    assert.match(r.stdout, /Option 3 against nbdkit: 32(\.0)? MiB template/);
    assert.match(r.stdout, /Verification: check clean; no backing file; .* — OK/);
    const folder = / in (\S+qedstream-demo-real-\S+) /.exec(r.stderr)?.[1];
    assert.ok(folder, r.stderr);
    await assert.rejects(Deno.stat(folder), Deno.errors.NotFound);
    const nbdkit = await new Deno.Command("pgrep", { args: ["-f", folder] }).output();
    assert.equal(new TextDecoder().decode(nbdkit.stdout).trim(), "", "nbdkit still running");
  },
});
