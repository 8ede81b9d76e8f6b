/**
 * A management loop that streams a disk one piece at a time and paces
 * itself, the way the seed's management code drove single-step streaming:
 * each call to `streamDisk(…, ONE)` copies one piece (at most 512 KiB) at an
 * offset and returns where to continue, and the loop decides when to ask for
 * the next piece. Here it keeps to a byte budget per second and backs off
 * while the guest is busy, so a host can provision many machines without
 * starving their I/O. The last piece ends the stream: the overlay stops
 * needing its template and `BLOCK_STREAM_COMPLETED` is emitted.
 *
 * `pacedStream()` works against `qedstream serve` and the emulator (qemu 7.2
 * has no one-step command: there, use `StreamDiskFlags.START` and a speed
 * limit). Run the demonstration with `deno run -A examples/paced_stream.ts`.
 *
 * @module
 */

// In your own project: import { ... } from "jsr:@qedstream/qedstream";
import {
  type Clock,
  type QmpClient,
  resolveDisk,
  startEmulator,
  streamDisk,
  StreamDiskFlags,
} from "@qedstream/qedstream";

/** Options of {@linkcode pacedStream}. */
export interface PacedStreamOptions {
  /** Bytes per second the loop aims for, averaged from its start. */
  bytesPerSecond: number;
  /** Asked before each piece: while it says so, the loop waits `backoffMs`. Default: never busy. */
  guestBusy?: () => boolean;
  /** How long to wait while the guest is busy, in ms. Default 200. */
  backoffMs?: number;
  /** Called after every piece with the offset reached and the disk size. */
  onPiece?: (offset: number, size: number) => void;
}

/** What {@linkcode pacedStream} did. */
export interface PacedStreamResult {
  /** Pieces streamed. */
  pieces: number;
  /** Times it waited for a busy guest. */
  backoffs: number;
}

/**
 * Streams `disk` piece by piece with `streamDisk(…, ONE)`, sleeping on
 * `clock` so that the average rate stays at `options.bytesPerSecond`.
 */
export async function pacedStream(
  qmp: QmpClient,
  disk: string,
  clock: Clock,
  options: PacedStreamOptions,
): Promise<PacedStreamResult> {
  const { size } = await resolveDisk(qmp, disk);
  const start = clock.now();
  let pieces = 0;
  let backoffs = 0;
  for (let offset = 0; offset < size;) {
    while (options.guestBusy?.()) {
      backoffs++;
      await clock.sleep(options.backoffMs ?? 200);
    }
    offset = await streamDisk(qmp, disk, offset, StreamDiskFlags.ONE);
    pieces++;
    options.onPiece?.(offset, size);
    // Pacing: sleep until the bytes done so far fit the budget.
    const due = start + (offset / options.bytesPerSecond) * 1000;
    if (due > clock.now()) await clock.sleep(due - clock.now());
  }
  return { pieces, backoffs };
}

if (import.meta.main) {
  await using emu = await startEmulator({
    clock: "virtual",
    drives: [{
      name: "vm1",
      template: { type: "sparse", template: { size: 32 << 20, bootRegionLength: 4 << 20 } },
    }],
  });
  const qmp = await emu.connect();
  const completed = qmp.waitEvent("BLOCK_STREAM_COMPLETED");
  // A guest that is busy for the first two seconds of every ten.
  const guestBusy = () => emu.clock.now() % 10_000 < 2_000;
  const result = await emu.run(() =>
    pacedStream(qmp, "vm1", emu.clock, { bytesPerSecond: 4 << 20, guestBusy })
  );
  const event = await completed;
  console.log(
    `vm1: ${result.pieces} pieces in ${(emu.clock.now() / 1000).toFixed(1)} virtual s ` +
      `(${result.backoffs} back-offs), completed at ${event.data.offset}/${event.data.len}, ` +
      `independent: ${emu.drive("vm1").independent}`,
  );
}
