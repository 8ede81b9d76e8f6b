import assert from "node:assert/strict";
import { parseDaemonArgs } from "../../daemon/args.ts";
import { Daemon } from "../../daemon/daemon.ts";
import { QmpClient } from "../../qmp/client.ts";
import { tempDir } from "../_tools.ts";

Deno.test("serve: a quorum from blockdev-add reports votes to QMP clients; its inline children are not the monitor's", async () => {
  await using dir = await tempDir();
  for (const [i, fill] of [1, 1, 9].entries()) {
    await Deno.writeFile(`${dir.path}/r${i}.raw`, new Uint8Array(1 << 20).fill(fill));
  }
  const daemon = await Daemon.start(parseDaemonArgs([
    "--blockdev",
    `driver=file,node-name=f0,filename=${dir.path}/r0.raw`,
    "--qmp",
    `unix:${dir.path}/qmp.sock`,
  ]));
  const client = await QmpClient.connect({ path: `${dir.path}/qmp.sock` });
  const refused = (command: string, args: Record<string, unknown>, desc: string) =>
    assert.rejects(client.execute(command, args), (e: Error & { desc?: string }) => {
      assert.equal(e.desc, desc);
      return true;
    });
  try {
    await client.execute("blockdev-add", {
      driver: "quorum",
      "node-name": "qu",
      "vote-threshold": 2,
      children: [
        "f0",
        {
          driver: "raw",
          "node-name": "c1",
          file: { driver: "file", filename: `${dir.path}/r1.raw` },
        },
        { driver: "file", "node-name": "c2", filename: `${dir.path}/r2.raw` },
      ],
    });
    const buf = new Uint8Array(4096);
    await daemon.graph.getNode("qu")!.read(8192, buf);
    assert.equal(buf[0], 1);
    const event = await client.waitEvent("QUORUM_REPORT_BAD", { timeout: 5000 });
    assert.deepEqual(event.data, {
      type: "read",
      "node-name": "c2",
      "sector-num": 16,
      "sectors-count": 8,
    });
    await refused("blockdev-del", { "node-name": "f0" }, "Block device f0 is in use");
    await refused("blockdev-del", { "node-name": "c1" }, "Node c1 is not owned by the monitor");
    await client.execute("blockdev-del", { "node-name": "qu" });
    assert.deepEqual(daemon.graph.nodes().map((n) => n.nodeName), ["f0"]);
    await client.execute("blockdev-del", { "node-name": "f0" });
  } finally {
    await client.close();
    await daemon.close();
  }
});
