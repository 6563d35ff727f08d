/**
 * The per-sender lock: one event of a conversation in flight at a time, the next ones waiting in order. The
 * subscription serialises a sender's deliveries with it; embedded brokers lock senders across a group's consumers.
 */
export class SenderLock<T = never> {
  /** Locked senders, each with the items waiting for it, oldest first. */
  readonly #held = new Map<string, T[]>();

  /** Senders holding the lock. */
  get size(): number {
    return this.#held.size;
  }

  isLocked(sender: string): boolean {
    return this.#held.has(sender);
  }

  /** Takes the lock when the sender is free (true); otherwise queues `item` behind it (false). */
  acquire(sender: string, item?: T): boolean {
    const waiting = this.#held.get(sender);
    if (waiting === undefined) {
      this.#held.set(sender, []);
      return true;
    }
    if (item !== undefined) waiting.push(item);
    return false;
  }

  /** Ends the holder's turn: returns the next waiting item, which now holds the lock, or frees the sender. */
  release(sender: string): T | undefined {
    const waiting = this.#held.get(sender);
    const next = waiting?.shift();
    if (next === undefined) this.#held.delete(sender);
    return next;
  }

  /** Takes every waiting item of one sender (in order), leaving its holder the lock. */
  takeWaiting(sender: string): T[] {
    return this.#held.get(sender)?.splice(0) ?? [];
  }

  /** Takes every waiting item of every sender (each sender's in order); holders keep their locks. */
  takeAllWaiting(): T[] {
    const all: T[] = [];
    for (const waiting of this.#held.values()) all.push(...waiting.splice(0));
    return all;
  }
}
