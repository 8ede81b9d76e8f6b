import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import { demoCommand, formatDemoProgress } from "../../cli/demo.ts";
import {
  bootLayout,
  parseBitRate,
  parseDemoOptions,
  parseDuration,
} from "../../cli/demo_options.ts";
import { BufferedOutput } from "../../cli/output.ts";
import { SCENARIO_KINDS, scenarioLabel } from "../../sim/scenario.ts";
import { tempDir } from "../_tools.ts";
import { qedstream } from "./_cli.ts";

const MIB = 1024 * 1024;

/** The default comparison scaled down for test speed: the same link, a 1 GiB template. */
const JSON_RUN = [
  "demo",
  "--size",
  "1G",
  "--duration",
  "2",
  "--seed",
  "7",
  "--scenarios",
  "copy,overlay,stream",
  "--output",
  "json",
];

interface MachineJson {
  name: string;
  firstIoMs: number;
  bootDoneMs: number;
  independentMs: number | null;
  bytesFetched: number;
  latency: { all: { p50: number; p99: number } };
  verify: { ok: boolean; checkClean: boolean; independent: boolean };
}

interface DemoJson {
  settings: { rttMs: number; seed: number; templateSize: number; timeBase: string };
  scenarios: { kind: string; label: string; machines: MachineJson[] }[];
  verified: boolean;
  svg: string;
}

Deno.test("qedstream demo prints the table, writes an SVG with every option's label and verifies", async () => {
  await using dir = await tempDir();
  const r = await qedstream(
    ["demo", "--size", "256M", "--duration", "2", "--machines", "2", "--svg", "t.svg"],
    dir.path,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^option +first I\/O +booted +local at/);
  for (const kind of SCENARIO_KINDS) assert.ok(r.stdout.includes(scenarioLabel(kind, 2)), kind);
  assert.match(r.stdout, /template 256 MiB/);
  assert.match(r.stdout, /written to .*t\.svg/);
  assert.match(r.stdout, /Verification of the streamed image .*check clean.*no backing file.*OK/);
  assert.match(r.stdout, /Verified: all 7 images/);
  // Not a terminal: plain progress lines, no bar.
  assert.ok(!r.stderr.includes("\r"));
  assert.match(r.stderr, /^demo: \[3\/6\] 3 {2}boot \+ stream: finished at /m);
  const svg = await Deno.readTextFile(`${dir.path}/t.svg`);
  assert.ok(svg.startsWith("<svg"));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  for (const kind of SCENARIO_KINDS) assert.ok(svg.includes(scenarioLabel(kind, 2)), kind);
  assert.ok(!/NaN|undefined|Infinity/.test(svg));
});

Deno.test("qedstream demo --output json: metrics per option, identical for a seed, option 3 boots like option 2", async () => {
  await using dir = await tempDir();
  const [a, b] = await Promise.all([
    qedstream([...JSON_RUN, "--svg", "a.svg"], dir.path),
    qedstream([...JSON_RUN, "--svg", "b.svg"], dir.path),
  ]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  // Nothing but the document on standard output.
  const ja = JSON.parse(a.stdout) as DemoJson;
  const jb = JSON.parse(b.stdout) as DemoJson;
  assert.equal(ja.verified, true);
  assert.equal(ja.settings.seed, 7);
  assert.equal(ja.settings.timeBase, "virtual");
  assert.deepEqual(ja.scenarios.map((s) => s.kind), ["copy", "overlay", "stream"]);
  for (const s of ja.scenarios) {
    const m = s.machines[0]!;
    for (const key of ["firstIoMs", "bootDoneMs", "bytesFetched"] as const) {
      assert.equal(typeof m[key], "number", `${s.kind}.${key}`);
    }
    assert.ok(m.latency.all.p99 >= m.latency.all.p50);
    assert.equal(m.verify.ok, true);
  }
  // Identical for a seed (only the SVG's name differs).
  assert.deepEqual(jb.scenarios, ja.scenarios);
  assert.deepEqual(jb.settings, ja.settings);
  assert.ok((await Deno.readTextFile(`${dir.path}/b.svg`)).startsWith("<svg"));

  const first = (kind: string) => ja.scenarios.find((s) => s.kind === kind)!.machines[0]!;
  const rtt = ja.settings.rttMs;
  const [copy, overlay, stream] = [first("copy"), first("overlay"), first("stream")];
  assert.ok(
    stream.firstIoMs <= overlay.firstIoMs + 2 * rtt,
    `${stream.firstIoMs} vs ${overlay.firstIoMs}`,
  );
  assert.ok(copy.firstIoMs >= 10 * stream.firstIoMs, `${copy.firstIoMs} vs ${stream.firstIoMs}`);
  assert.equal(overlay.independentMs, null);
  assert.ok(stream.independentMs !== null && stream.verify.independent);
});

Deno.test("qedstream demo: a bad option is one line on standard error and exit 2", async () => {
  const cases = [
    ["--rtt", "x"],
    ["--rtt"],
    ["--bandwidth", "fast"],
    ["--bandwidth", "10"],
    ["--size", "100000"],
    ["--size", "1T"],
    ["--size", "big"],
    ["--machines", "0"],
    ["--machines", "2.5"],
    ["--seed", "-1"],
    ["--scenarios", "copy,teleport"],
    ["--scenarios", ","],
    ["--read-fraction", "1.5"],
    ["--think-ms", "soon"],
    ["--duration", "5h"],
    ["--output", "xml"],
    ["--svg="],
    ["--frobnicate"],
    ["operand"],
  ];
  for (const args of cases) {
    const out = new BufferedOutput();
    const code = await main(["demo", ...args], out);
    assert.equal(code, 2, `${args.join(" ")}: ${out.err}`);
    assert.equal(out.out, "");
    assert.match(out.err, /^qedstream: demo: [^\n]+\n$/, args.join(" "));
  }
  await using dir = await tempDir();
  const r = await qedstream(["demo", "--machines", "none"], dir.path);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.equal(
    r.stderr,
    "qedstream: demo: --machines must be an integer from 1 to 64, not 'none' (try 'qedstream demo --help')\n",
  );
});

Deno.test("qedstream demo --help lists the options", async () => {
  const out = new BufferedOutput();
  assert.equal(await main(["demo", "--help"], out), 0);
  for (const option of ["--size", "--rtt", "--bandwidth", "--real-time", "--output", "--svg"]) {
    assert.ok(out.out.includes(option), option);
  }
  assert.match(out.out, /bits per second/);
});

Deno.test("demo options: bit rates, durations, sizes and the default layout", () => {
  assert.equal(parseBitRate("1G"), 1e9);
  assert.equal(parseBitRate("2.5m"), 2.5e6);
  assert.equal(parseBitRate("800k"), 8e5);
  assert.equal(parseBitRate("1Gi"), null);
  assert.equal(parseDuration("20"), 20_000);
  assert.equal(parseDuration("1.5s"), 1500);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("-1"), null);
  // At the default size the layout is the simulator's own default.
  assert.deepEqual(bootLayout(4096 * MIB), { templateBoot: 64 * MIB, guestBoot: 32 * MIB });
  assert.deepEqual(bootLayout(1 * MIB), { templateBoot: 128 * 1024, guestBoot: 64 * 1024 });
  const o = parseDemoOptions(["--bandwidth", "100M", "--size=1G", "--read-fraction", "0.5"]);
  assert.equal(o.comparison.bandwidth, 12_500_000);
  assert.equal(o.comparison.template?.size, 1024 * MIB);
  assert.deepEqual(o.workload, { readFraction: 0.5 });
  const rt = parseDemoOptions(["--real-time"]);
  assert.equal(rt.realTime, true);
  assert.equal(rt.comparison.template?.size, 256 * MIB);
  assert.equal(rt.workload.durationMs, 3000);
});

Deno.test("qedstream demo on a terminal redraws one bar per scenario", async () => {
  await using dir = await tempDir();
  const out = new BufferedOutput();
  const args = ["--size", "64M", "--duration", "0.5", "--scenarios", "stream,overlay"];
  const code = await demoCommand([...args, "--svg", `${dir.path}/x.svg`], out, {
    terminal: true,
    columns: 150,
  });
  assert.equal(code, 0, out.err);
  assert.match(out.err, /\r\[1\/2\] 3 {2}boot \+ stream +sim +[0-9.]+ s {2}\[[#-]{20}\]/);
  assert.match(out.err, /\r\[2\/2\] 2 {2}overlay on remote/);
  // Each scenario's last bar stays on screen.
  assert.equal(out.err.split("\x1b[K\n").length - 1, 2);
  const line = formatDemoProgress(
    {
      scenario: "copy",
      label: "1  copy, then boot",
      index: 0,
      count: 5,
      elapsedMs: 2500,
      localBytes: 512 * MIB,
      templateBytes: 1024 * MIB,
    },
    0,
    60,
  );
  assert.equal(line.length, 59);
  assert.ok(line.startsWith("[1/5] 1  copy, then boot"));
});

Deno.test("qedstream demo --real-time runs on the system clock against files it removes", async () => {
  await using dir = await tempDir();
  const r = await qedstream([
    "demo",
    "--real-time",
    "--size",
    "16M",
    "--duration",
    "300ms",
    "--scenarios",
    "stream",
    "--output",
    "json",
    "--svg",
    "rt.svg",
  ], dir.path);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as DemoJson;
  assert.equal(doc.settings.timeBase, "real");
  assert.equal(doc.verified, true);
  const folder = /image files in (\S+)/.exec(r.stderr)?.[1];
  assert.ok(folder, r.stderr);
  await assert.rejects(Deno.stat(folder), Deno.errors.NotFound);
  assert.match(await Deno.readTextFile(`${dir.path}/rt.svg`), /real time/);
});
