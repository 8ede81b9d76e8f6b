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
