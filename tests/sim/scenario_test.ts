import assert from "node:assert/strict";
import {
  type ComparisonOptions,
  type ComparisonResult,
  comparisonSvg,
  formatComparisonTable,
  runComparison,
} from "../../sim/scenario.ts";

const MIB = 1024 * 1024;

/** The default comparison scaled down for test speed: same link, 1/4 of the disk. */
const SCALED: ComparisonOptions = {
  seed: 11,
  template: { size: 1024 * MIB, bootRegionLength: 16 * MIB, dataFraction: 0.08 },
  guest: { boot: { regionLength: 8 * MIB, files: 60 }, steady: { durationMs: 3000 } },
  machines: 2,
  trackGranularity: 4096,
};

let shared: Promise<ComparisonResult> | undefined;
const scaled = () => shared ??= runComparison(SCALED);
const scenario = (r: ComparisonResult, kind: string) => r.scenarios.find((s) => s.kind === kind)!;

Deno.test("runComparison() gives identical results for a seed, and different ones for another", async () => {
  const a = await scaled();
  const b = await runComparison(SCALED);
  assert.deepEqual(b, a);
  assert.equal(comparisonSvg(b), comparisonSvg(a));
  const c = await runComparison({ ...SCALED, seed: 12, scenarios: ["stream"] });
  assert.notDeepEqual(
    c.scenarios[0]!.machines[0]!.latency,
    scenario(a, "stream").machines[0]!.latency,
  );
});

Deno.test("option 3 reaches first I/O about as fast as option 2 and far sooner than option 1", async () => {
  const r = await scaled();
  const rtt = r.settings.rttMs;
  const copy = scenario(r, "copy").machines[0]!;
  const overlay = scenario(r, "overlay").machines[0]!;
  const stream = scenario(r, "stream").machines[0]!;
  const managed = scenario(r, "managed").machines[0]!;
  // Within a couple of round trips of the overlay (the copy-on-read path asks the remote for status once).
  assert.ok(
    stream.firstIoMs <= overlay.firstIoMs + 2 * rtt,
    `${stream.firstIoMs} vs ${overlay.firstIoMs}`,
  );
  assert.ok(managed.firstIoMs <= overlay.firstIoMs + 2 * rtt);
  // The copy needs the whole template's data over the link first.
  const transfer = (r.settings.templateDataBytes / r.settings.bandwidth) * 1000;
  assert.ok(copy.firstIoMs >= transfer, `${copy.firstIoMs} < ${transfer}`);
  assert.ok(copy.firstIoMs >= 10 * stream.firstIoMs, `${copy.firstIoMs} vs ${stream.firstIoMs}`);
  // Option 2 never stops needing the repository; the others do.
  assert.equal(overlay.independentMs, null);
  for (const kind of ["copy", "stream", "managed", "working-set", "fleet"]) {
    for (const m of scenario(r, kind).machines) {
      assert.ok(m.independentMs !== null, `${kind} ${m.name}`);
    }
  }
});

Deno.test("after streaming, every overlay is independent, checks clean and reads as template + writes", async () => {
  const r = await scaled();
  assert.equal(r.verified, true);
  for (const kind of ["copy", "stream", "managed", "fleet"]) {
    for (const m of scenario(r, kind).machines) {
      const v = m.verify!;
      assert.ok(v.ok, `${kind}/${m.name}: ${v.problems.join("; ")}`);
      assert.equal(v.independent, true);
      assert.deepEqual(v.check, { corruptions: 0, leaks: 0, checkErrors: 0 });
      assert.ok(v.bytesCompared >= r.settings.templateDataBytes);
    }
  }
  const overlay = scenario(r, "overlay").machines[0]!;
  assert.equal(overlay.verify!.independent, false);
  assert.ok(overlay.verify!.checkClean);
  assert.match(formatComparisonTable(r), /verified 7 images/);
});

Deno.test("option 3 fetches each template cluster at most once", async () => {
  const r = await scaled();
  for (const kind of ["copy", "stream", "managed", "fleet"]) {
    for (const m of scenario(r, kind).machines) {
      assert.equal(
        m.refetchedUnits,
        0,
        `${kind}/${m.name} fetched ${m.refetchedUnits} units twice`,
      );
      // At most the data plus the holes the guest's writes made it copy around them.
      const slack = m.guest.writes * r.settings.clusterSize;
      assert.ok(
        m.bytesFetched <= r.settings.templateDataBytes + slack,
        `${kind}: ${m.bytesFetched}`,
      );
      assert.ok(m.bytesFetched >= r.settings.templateDataBytes);
    }
  }
  // The fleet's repository served each machine its own copy, once.
  const fleet = scenario(r, "fleet");
  const sum = fleet.machines.reduce((s, m) => s + m.bytesFetched, 0);
  assert.equal(fleet.repository.bytes, sum);
});

Deno.test("the timeline covers every scenario and the SVG is a self-contained picture", async () => {
  const r = await scaled();
  assert.equal(r.timeline.localBytes.length, 6);
  for (const s of r.timeline.localBytes) {
    assert.ok(s.points.length > 2);
    assert.equal(s.points[0]![0], 0);
  }
  const stream = r.timeline.localBytes.find((s) => s.label.startsWith("3 "))!;
  assert.ok(stream.points.at(-1)![1] >= r.settings.templateDataBytes);
  const svg = comparisonSvg(r);
  assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /Guest I\/O latency/);
  assert.ok(!/NaN|undefined|Infinity/.test(svg));
  assert.ok(svg.trimEnd().endsWith("</svg>"));
});

Deno.test("runComparison() reports progress at every timeline sample, in virtual time", async () => {
  const seen: { scenario: string; elapsedMs: number; localBytes: number }[] = [];
  const r = await runComparison({
    scenarios: ["copy", "stream"],
    template: { size: 128 * MIB, bootRegionLength: 4 * MIB },
    guest: { boot: { regionLength: 2 * MIB, files: 10 }, steady: { durationMs: 1000 } },
    sampleMs: 100,
    onProgress: (p) => seen.push(p),
  });
  assert.deepEqual([...new Set(seen.map((p) => p.scenario))], ["copy", "stream"]);
  const stream = seen.filter((p) => p.scenario === "stream");
  assert.equal(stream[0]!.elapsedMs, 0);
  assert.ok(stream.every((p, i) => i === 0 || p.elapsedMs >= stream[i - 1]!.elapsedMs));
  assert.ok(stream.at(-1)!.localBytes >= r.settings.templateDataBytes);
});
