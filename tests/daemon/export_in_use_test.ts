import assert from "node:assert/strict";
import { parseDaemonArgs } from "../../daemon/args.ts";
import { Daemon } from "../../daemon/daemon.ts";
import { QmpClient } from "../../qmp/client.ts";
import { tempDir } from "../_tools.ts";

Deno.test("blockdev-del refuses a node an NBD export serves, as qemu refuses a node in use", async () => {
  await using dir = await tempDir();
  await Deno.writeFile(`${dir.path}/disk.raw`, new Uint8Array(1 << 20));
  const daemon = await Daemon.start(parseDaemonArgs([
    "--blockdev",
    `driver=file,node-name=f0,filename=${dir.path}/disk.raw`,
    "--blockdev",
    "driver=raw,node-name=disk,file=f0",
    "--qmp",
    `unix:${dir.path}/qmp.sock`,
    "--nbd-server",
    `addr.type=unix,addr.path=${dir.path}/nbd.sock`,
    "--export",
    "type=nbd,id=e0,node-name=disk",
  ]));
  const client = await QmpClient.connect({ path: `${dir.path}/qmp.sock` });
  try {
    await assert.rejects(
      client.execute("blockdev-del", { "node-name": "disk" }),
      (e: Error & { desc?: string }) => e.desc === "Node disk is in use",
    );
  } finally {
    client.close();
    await daemon.close();
  }
});
