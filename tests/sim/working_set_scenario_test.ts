import assert from "node:assert/strict";
import { formatComparisonTable, runComparison, workingSetSpeedup } from "../../sim/mod.ts";

Deno.test("the working-set scenario boots at least 2x sooner than the plain stream on a 100 Mbit/s link", async () => {
  const result = await runComparison({
    bandwidth: 12_500_000,
    scenarios: ["stream", "working-set"],
    guest: { steady: { durationMs: 2000 } },
  });
  const speedup = workingSetSpeedup(result)!;
  console.log(
    `boot: plain stream ${speedup.plainBootMs.toFixed(0)} ms, working set first ` +
      `${speedup.workingSetBootMs.toFixed(0)} ms (${speedup.ratio.toFixed(2)}x)`,
  );
  assert.ok(speedup.ratio >= 2, `${speedup.ratio}`);
  assert.equal(result.verified, true);
  const ws = result.scenarios[1]!;
  assert.ok(ws.workingSet!.ranges > 0 && ws.workingSet!.bytes > 0);
  assert.notEqual(ws.machines[0]!.independentMs, null);
  const table = formatComparisonTable(result);
  assert.match(table, /3w working-set first/);
  assert.match(table, /with the plain stream: \d+\.\d\dx sooner/);
});
