import assert from "node:assert/strict";
import { nbdNode } from "../../block/nbd_node.ts";
import { memoryServer, pattern, pipeClient } from "./_nbd_tools.ts";

const KiB = 1024;

Deno.test("nbdNode() reads, writes and reports holes as unallocated, data as data", async () => {
  const { server, target } = memoryServer(1024 * KiB);
  target.bytes.set(pattern(64 * KiB, 3), 0);
  target.state.fill("data", 0, 16);
  target.state.fill("zero", 16, 32);
  const client = await pipeClient(server, { exportName: "disk" });
  const node = nbdNode(client, { nodeName: "n", filename: "nbd+unix:///disk?socket=/s" });
  try {
    assert.equal(node.driver, "nbd");
    assert.equal(node.backing, null);
    assert.equal(node.readOnly, false);
    assert.deepEqual(await node.blockStatus(0, 1024 * KiB), { kind: "data", length: 64 * KiB });
    assert.deepEqual(await node.blockStatus(64 * KiB, 8 * KiB), {
      kind: "unallocated",
      length: 8 * KiB,
    });
    assert.deepEqual(await node.blockStatus(192 * KiB, 1024 * KiB), {
      kind: "unallocated",
      length: 832 * KiB,
    });
    const buf = new Uint8Array(8);
    await node.read(4, buf);
    assert.deepEqual(buf, pattern(64 * KiB, 3).subarray(4, 12));
    await node.write(512 * KiB, new Uint8Array(4096).fill(9));
    // A write forgets the run kept from the look-ahead.
    assert.deepEqual(await node.blockStatus(512 * KiB, 4096), { kind: "data", length: 4096 });
  } finally {
    await node.close();
    await server.close();
  }
});

Deno.test("nbdNode() answers a long run from one look-ahead query", async () => {
  const { server, target } = memoryServer(64 * 1024 * KiB);
  const client = await pipeClient(server, { exportName: "disk" });
  let asked = 0;
  const node = nbdNode({
    get size() {
      return client.size;
    },
    get readOnly() {
      return client.readOnly;
    },
    read: (o, b) => client.read(o, b),
    write: (o, d) => client.write(o, d),
    writeZeroes: (o, n) => client.writeZeroes(o, n),
    flush: () => client.flush(),
    blockStatus: (o, n) => {
      asked++;
      return client.blockStatus(o, n);
    },
    close: () => client.close(),
  }, { nodeName: "n", readOnly: true });
  try {
    target.state.fill("unallocated");
    for (let at = 0; at < 64 * 1024 * KiB; at += 512 * KiB) {
      assert.equal((await node.blockStatus(at, 512 * KiB)).kind, "unallocated");
    }
    assert.equal(asked, 1);
    assert.equal(node.readOnly, true);
    await assert.rejects(node.write(0, new Uint8Array(1)), /read only/);
  } finally {
    await node.close();
    await server.close();
  }
});
