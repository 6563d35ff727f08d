/**
 * The contiguous-ack window: messages are handed out in log order and acknowledged in any order (concurrent
 * handlers), but a log position (a file offset, a Kafka partition offset) may only move over a prefix of which
 * every message is acknowledged. Otherwise a crash would skip an event still being handled.
 */
export class AckWindow<T> {
  /** Entries not yet passed by the committed mark, in log order. */
  #entries: { readonly item: T; readonly end: number; acked: boolean }[] = [];
  #head = 0;
  #committed: number;

  /** `committed`: where the window starts (the position after the last message already committed). */
  constructor(committed = 0) {
    this.#committed = committed;
  }

  /** The position after the last message of the acknowledged prefix: what may be committed. */
  get committed(): number {
    return this.#committed;
  }

  /** Messages added and not yet passed by the committed mark. */
  get size(): number {
    return this.#entries.length - this.#head;
  }

  /** Adds the next message in log order; `end` is the position just after it (offset + 1, a line's end byte). */
  add(item: T, end: number): void {
    this.#entries.push({ item, end, acked: false });
  }

  /** Marks `item` acknowledged and advances over the acknowledged prefix. Returns true when the mark moved. */
  ack(item: T): boolean {
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i]!;
      if (entry.item === item) {
        entry.acked = true;
        break;
      }
    }
    return this.#advance();
  }

  /** The items not acknowledged yet, in log order. */
  pending(): T[] {
    const items: T[] = [];
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i]!;
      if (!entry.acked) items.push(entry.item);
    }
    return items;
  }

  /** Forgets everything and starts again at `committed` (the log was replaced, a partition was reassigned). */
  reset(committed = 0): void {
    this.#entries = [];
    this.#head = 0;
    this.#committed = committed;
  }

  #advance(): boolean {
    let moved = false;
    while (this.#head < this.#entries.length && this.#entries[this.#head]!.acked) {
      this.#committed = this.#entries[this.#head]!.end;
      this.#head++;
      moved = true;
    }
    // Compact now and then: the array only grows at its end.
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
    return moved;
  }
}
