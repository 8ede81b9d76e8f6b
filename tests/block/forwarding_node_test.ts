import assert from "node:assert/strict";
import { forwardingNode } from "../../block/node.ts";
import { memOverlay, templateNode } from "./_fixtures.ts";

Deno.test("forwardingNode() forwards live, replaces what it is given, and can hide setBacking", async () => {
  const template = templateNode(new Uint8Array(1 << 20).fill(7));
  const top = await memOverlay(template.node); // a class with private fields
  let reads = 0;
  const counted = forwardingNode(top, {
    nodeName: "counted",
    read: (offset, buf) => (reads++, top.read(offset, buf)),
  });
  assert.equal(counted.nodeName, "counted");
  assert.equal(counted.driver, top.driver);
  assert.equal(counted.size, top.size);
  assert.equal(counted.clusterSize, top.clusterSize);
  const buf = new Uint8Array(4096);
  await counted.read(0, buf);
  assert.equal(reads, 1);
  assert.equal(buf[0], 7);
  await counted.write(0, new Uint8Array(4096).fill(1)); // forwarded to the class's method
  await top.read(0, buf);
  assert.equal(buf[0], 1);
  // The backing link is read when asked: a change through the forwarding node shows at once.
  assert.equal(counted.backing, template.node);
  await counted.setBacking!(null, { backingFile: null });
  assert.equal(top.backing, null);
  assert.equal(counted.backing, null);
  assert.equal(forwardingNode(top, { setBacking: false }).setBacking, undefined);
});
