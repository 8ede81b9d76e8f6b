import assert from "node:assert/strict";
import {
  BlockJobStatus,
  blockJobWait,
  blockPull,
  getBlockJobInfo,
  type QmpConnection,
  resolveDisk,
} from "../../manage/mod.ts";
import { programsPresent, tempDir } from "../_tools.ts";
import { backingOf, makeChain, sameContents, SERVER_KINDS, startServer } from "./_servers.ts";

/**
 * A provisioning script written only against the management API, as an
 * operator would write it: pull the template into the new machine's disk
 * at a bandwidth cap, report progress, and check the disk stands alone.
 */
async function provision(conn: QmpConnection, image: string): Promise<string[]> {
  const log: string[] = [];
  const disk = await resolveDisk(conn, image);
  log.push(`disk ${disk.target}: ${disk.size} bytes on ${disk.backingChain.join(" <- ")}`);
  await blockPull(conn, image, { bandwidth: 8 });
  const { status, error } = await blockJobWait(conn, image, {
    interval: 100,
    onProgress: (i) => log.push(`${i.cur}/${i.end}`),
  });
  if (status !== BlockJobStatus.COMPLETED) throw new Error(`pull ended ${status}: ${error}`);
  if (await getBlockJobInfo(conn, image)) throw new Error("job still listed");
  const after = await resolveDisk(conn, image);
  if (after.backingChain.length !== 0) throw new Error("disk still needs its template");
  log.push("provisioned");
  return log;
}

Deno.test({
  name: "one provisioning script streams a disk through qemu-storage-daemon and qedstream alike",
  ignore: !programsPresent("qemu-img", "qemu-io", "qemu-storage-daemon"),
  fn: async () => {
    const logs: string[][] = [];
    for (const kind of SERVER_KINDS) {
      await using dir = await tempDir();
      await makeChain(dir.path);
      await using server = await startServer(kind, dir.path);
      const conn = await server.connect();
      try {
        logs.push(await provision(conn, `${dir.path}/ov.qed`));
      } finally {
        await conn.close();
      }
      await server.stop();
      assert.equal(await backingOf(`${dir.path}/ov.qed`), undefined, kind);
      assert.ok(await sameContents(`${dir.path}/ov.qed`, `${dir.path}/base.raw`), kind);
    }
    for (const log of logs) {
      assert.match(log[0]!, /^disk ov: 4194304 bytes on \/.*\/base\.raw$/);
      assert.equal(log.at(-1), "provisioned");
    }
  },
});
