/**
 * A first-in, first-out lock: the "allocating token" that serialises
 * allocating writes and metadata updates.
 *
 * @module
 */

/** A mutex granting the lock in request order. */
export class FifoLock {
  #tail: Promise<void> = Promise.resolve();
  #held = 0;

  /** Whether the lock is held or requested. */
  get busy(): boolean {
    return this.#held > 0;
  }

  /** How many requests wait behind the holder. */
  get queued(): number {
    return Math.max(0, this.#held - 1);
  }

  /** Takes the lock at once if nobody holds or awaits it; else returns `undefined`. */
  tryAcquire(): (() => void) | undefined {
    if (this.#held > 0) return undefined;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => {
      release = this.#releaser(resolve);
    });
    this.#held++;
    return release;
  }

  #releaser(resolve: () => void): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#held--;
      resolve();
    };
  }

  /** Waits for the lock; call the returned function exactly once to release it. */
  acquire(): Promise<() => void> {
    let release!: () => void;
    const done = new Promise<void>((resolve) => {
      release = this.#releaser(resolve);
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => done);
    this.#held++;
    return previous.then(() => release);
  }
}
