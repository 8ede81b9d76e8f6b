import assert from "node:assert/strict";
import { imageFormat, outputFormat, parseArgs } from "../../cli/args.ts";
import { CliError } from "../../cli/error.ts";

const spec = { shortValues: "fbo", shortFlags: "uq", longValues: ["output"], longFlags: ["chain"] };

Deno.test("parseArgs() separates options and operands anywhere on the line", () => {
  const a = parseArgs(["x.qed", "-f", "qed", "--output=json", "1M", "-uq", "--chain"], spec);
  assert.deepEqual(a.operands, ["x.qed", "1M"]);
  assert.deepEqual(a.values.get("f"), ["qed"]);
  assert.deepEqual(a.values.get("output"), ["json"]);
  assert.deepEqual([...a.flags].sort(), ["chain", "q", "u"]);
});

Deno.test("parseArgs() takes attached and separate values, keeps repeats in order", () => {
  const a = parseArgs(["-fraw", "-o", "a=1", "-oa=2", "--output", "human", "-ub", "base"], spec);
  assert.deepEqual(a.values.get("f"), ["raw"]);
  assert.deepEqual(a.values.get("o"), ["a=1", "a=2"]);
  assert.deepEqual(a.values.get("b"), ["base"]);
  assert.ok(a.flags.has("u"));
});

Deno.test("parseArgs() stops at -- and accepts an empty value", () => {
  const a = parseArgs(["-b", "", "--", "-q", "--output"], spec);
  assert.deepEqual(a.values.get("b"), [""]);
  assert.deepEqual(a.operands, ["-q", "--output"]);
});

Deno.test("parseArgs() refuses unknown options and missing values", () => {
  assert.throws(
    () => parseArgs(["-x"], spec),
    (e) => e instanceof CliError && /invalid option -- 'x'/.test(e.message),
  );
  assert.throws(() => parseArgs(["-f"], spec), /requires an argument -- 'f'/);
  assert.throws(() => parseArgs(["--output"], spec), /'--output' requires an argument/);
  assert.throws(() => parseArgs(["--nope"], spec), /unrecognized option '--nope'/);
  assert.throws(() => parseArgs(["--chain=1"], spec), /unrecognized option/);
});

Deno.test("outputFormat() and imageFormat() accept only known names", () => {
  assert.equal(outputFormat(parseArgs([], spec)), "human");
  assert.equal(outputFormat(parseArgs(["--output", "json"], spec)), "json");
  assert.throws(() => outputFormat(parseArgs(["--output", "xml"], spec)), /human or json/);
  assert.equal(imageFormat(undefined), undefined);
  assert.equal(imageFormat("raw"), "raw");
  assert.throws(() => imageFormat("qcow2"), /Unknown file format 'qcow2'/);
});
