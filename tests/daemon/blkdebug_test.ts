import assert from "node:assert/strict";
import {
  Blkdebug,
  openBlkdebug,
  parseBlkdebugConfig,
  parseBlkdebugRules,
} from "../../daemon/blkdebug.ts";
import { tempDir } from "../_tools.ts";

const CONFIG = `# the rules of qemu's iotest 030
[inject-error]
state = "1"
event = "read_aio"
errno = "5"
immediately = "off"
once = "on"
sector = "1024"

[set-state]
state = "1"
event = "read_aio"
new_state = "2"

[set-state]
state = "2"
event = "read_aio"
new_state = "1"
`;

Deno.test("parseBlkdebugConfig() reads [inject-error] and [set-state] sections", () => {
  const c = parseBlkdebugConfig(CONFIG);
  assert.equal(c.injectError.length, 1);
  assert.equal(c.injectError[0]?.sector, "1024");
  assert.deepEqual(c.setState.map((s) => s.new_state), ["2", "1"]);
  assert.throws(() => parseBlkdebugConfig("[nope]\n"), /Could not read blkdebug config file/);
});

Deno.test("Blkdebug fails the read covering the sector once, flipping states per event", async () => {
  const debug = new Blkdebug(parseBlkdebugRules({}, CONFIG));
  const read = (offset: number) =>
    debug.request("read", offset, 512 * 1024, () => Promise.resolve());
  await read(0); // state 1 → 2; the rule is active but the sector is elsewhere
  assert.equal(debug.state, 2);
  await assert.rejects(read(512 * 1024), /Input\/output error/); // still active: fires
  assert.equal(debug.state, 1);
  await read(512 * 1024); // once: gone
});

Deno.test("inline inject-error.N: iotype restricts the rule, errno 28 is ENOSPC", async () => {
  const rules = parseBlkdebugRules({
    injectError: { "0": { event: "write_aio", iotype: "write", errno: "28" } },
  });
  assert.deepEqual(rules.flat, {
    "inject-error.0.event": "write_aio",
    "inject-error.0.iotype": "write",
    "inject-error.0.errno": 28,
  });
  const debug = new Blkdebug(rules);
  await debug.request("read", 0, 512, () => Promise.resolve());
  await assert.rejects(
    debug.request("write", 0, 512, () => Promise.resolve()),
    (e: Error & { code?: string }) => e.code === "ENOSPC",
  );
  assert.throws(
    () => parseBlkdebugRules({ injectError: [{ event: "nonsense" }] }),
    /Parameter 'event' does not accept value 'nonsense'/,
  );
});

Deno.test("openBlkdebug() reads config=FILE, with qemu's text when it is missing", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/bd.conf`, CONFIG);
  const { flat } = await openBlkdebug({ config: `${dir.path}/bd.conf` });
  assert.deepEqual(flat, { config: `${dir.path}/bd.conf` });
  await assert.rejects(
    openBlkdebug({ config: `${dir.path}/none.conf` }),
    /Could not read blkdebug config file: No such file or directory/,
  );
});

Deno.test("__com.qedstream_sectors and __com.qedstream_probability: errors over a range, with a probability", async () => {
  const debug = new Blkdebug(parseBlkdebugRules({
    injectError: {
      "0": { event: "read_aio", sector: "2048", "__com.qedstream_sectors": "2048" },
    },
  }));
  const read = (offset: number, length = 4096) =>
    debug.request("read", offset, length, () => Promise.resolve());
  await read(0); // before the range
  await assert.rejects(read(1 << 20), /Input\/output error/); // first sector of the range
  await assert.rejects(read((1 << 20) + 123_456), /Input\/output error/); // inside it
  await assert.rejects(read((1 << 20) - 2048), /Input\/output error/); // overlapping its start
  await read(2 << 20); // just past it
  // A quarter of the writes fail, the same ones on every run (seeded by the rule).
  const outcomes = async () => {
    const d = new Blkdebug(parseBlkdebugRules({
      injectError: [{ event: "write_aio", "__com.qedstream_probability": "0.25" }],
    }));
    const failed: number[] = [];
    for (let i = 0; i < 400; i++) {
      await d.request("write", i * 512, 512, () => Promise.resolve()).catch(() => failed.push(i));
    }
    return failed;
  };
  const first = await outcomes();
  assert.ok(first.length > 60 && first.length < 140, `${first.length} of 400 failed`);
  assert.deepEqual(await outcomes(), first);
  assert.throws(
    () =>
      parseBlkdebugRules({
        injectError: [{ event: "read_aio", "__com.qedstream_probability": "2" }],
      }),
    /expects a number from 0 to 1/,
  );
});
