/**
 * Page-cache warm-up before a timed case.
 *
 * On a virtual machine with virtio-balloon free page reporting, memory the
 * guest frees is handed back to the host about two seconds later, and the
 * next allocation of it faults through the hypervisor again. Here a 1 GiB
 * copy then costs ~2.6 s instead of ~0.7 s (`cp` + `sync`, measured on this
 * project's 2-core KVM machine), so whichever case happens to run right
 * after another one freed its output gets warm pages and the others pay the
 * hypervisor: the ratios measured the order of the cases, not the tools.
 *
 * Writing a scratch file of the size the case will write and deleting it at
 * once (before writeback, so nothing reaches the disk) gives every case the
 * same warm memory. Call it after the case's own preparation and `sync`,
 * right before the timed part.
 *
 * @module
 */

import { join } from "node:path";

const MiB = 1024 * 1024;

/** Dirties `sizeMiB` MiB of page cache in `dir`, then frees it again. */
export async function warmPageCache(dir: string, sizeMiB: number): Promise<void> {
  const path = join(dir, "warm-up.scratch");
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    const zeros = new Uint8Array(MiB);
    for (let i = 0; i < sizeMiB; i++) {
      let done = 0;
      while (done < zeros.length) done += await file.write(zeros.subarray(done));
    }
  } finally {
    file.close();
    await Deno.remove(path);
  }
}
