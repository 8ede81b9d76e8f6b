import assert from "node:assert/strict";
import { EventThrottle } from "../../qmp/event_throttle.ts";
import { memoryTransportPair, QmpServer } from "../../qmp/mod.ts";
import { VirtualClock } from "../../sim/virtual_clock.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test("EventThrottle holds back, replaces and releases events as qemu-storage-daemon's monitor did", async () => {
  // The timeline recorded from qsd 7.2 with three quorum children (c1, c2 differing).
  const clock = new VirtualClock();
  const sent: [number, string][] = [];
  const throttle = new EventThrottle(clock, (b) => sent.push([clock.now(), dec.decode(b)]));
  const offer = (event: string, node: string | undefined, label: string) =>
    throttle.offer(event, node === undefined ? {} : { "node-name": node }, enc.encode(label));
  offer("QUORUM_REPORT_BAD", "c2", "A");
  await clock.advance(300);
  offer("QUORUM_REPORT_BAD", "c1", "B"); // another child: a period of its own
  await clock.advance(300);
  offer("QUORUM_REPORT_BAD", "c2", "C0"); // held back ...
  offer("QUORUM_REPORT_BAD", "c2", "C"); // ... and replaced
  await clock.advance(300);
  offer("QUORUM_FAILURE", undefined, "D");
  offer("JOB_STATUS_CHANGE", undefined, "J"); // not throttled
  await clock.advance(300); // t = 1200: C went out at 1000, c2's next period runs to 2000
  offer("QUORUM_FAILURE", undefined, "E");
  await clock.advance(200); // t = 1400: c1's period ended at 1300 with nothing held
  offer("QUORUM_REPORT_BAD", "c1", "F");
  await clock.advance(1000);
  assert.deepEqual(sent, [
    [0, "A"],
    [300, "B"],
    [900, "D"],
    [900, "J"],
    [1000, "C"],
    [1400, "F"],
    [1900, "E"],
  ]);
  throttle.close();
  assert.equal(clock.pendingTimers, 0);
});

Deno.test("QmpServer throttles QUORUM_FAILURE; the event held back keeps its timestamp", async () => {
  const clock = new VirtualClock({ epoch: 1_000_000 });
  const server = new QmpServer({ clock });
  const [peer, end] = memoryTransportPair();
  void server.serve(end);
  let text = "";
  const lines = async (n: number) => {
    while (text.split("\r\n").length - 1 < n) text += dec.decode((await peer.read())!);
    return text.split("\r\n").slice(0, n).map((l) => JSON.parse(l));
  };
  await lines(1);
  await peer.write(enc.encode('{"execute":"qmp_capabilities"}'));
  await lines(2);
  server.emitEvent("QUORUM_FAILURE", { reference: "qu", "sector-num": 0, "sectors-count": 1 });
  await clock.advance(250);
  server.emitEvent("QUORUM_FAILURE", { reference: "qu", "sector-num": 8, "sectors-count": 1 });
  assert.equal((await lines(3)).length, 3);
  await clock.advance(1000);
  const [, , first, second] = await lines(4);
  assert.deepEqual(first.data["sector-num"], 0);
  assert.deepEqual(second.data["sector-num"], 8);
  assert.deepEqual(second.timestamp, { seconds: 1000, microseconds: 250000 });
  server.close();
  peer.close();
});
