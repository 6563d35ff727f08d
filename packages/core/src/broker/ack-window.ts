/**
 * The contiguous-ack window: messages are handed out in log order and acknowledged in any order (concurrent
 * handlers), but a log position (a file offset, a Kafka partition offset) may only move over a prefix of which
 * every message is acknowledged. Otherwise a crash would skip an event still being handled.
 */
interface Entry<T> {
  readonly item: T | undefined;
  readonly end: number;
  acked: boolean;
}

export class AckWindow<T> {
  /** Entries not yet passed by the committed mark, in log order. */
  #entries: Entry<T>[] = [];
  #head = 0;
  #committed: number;
  /**
   * The entry of each unacknowledged item: an ack finds its entry at once. A linear search would make a window
   * held open by one slow message quadratic in the messages acknowledged behind it.
   */
  #unacked = new Map<T, Entry<T>>();

  /** `committed`: where the window starts (the position after the last message already committed). */
  constructor(committed = 0) {
    this.#committed = committed;
  }

  /** The position after the last message of the acknowledged prefix: what may be committed. */
  get committed(): number {
    return this.#committed;
  }

  /** Where the next message must end at or after: the end of the last one added (or `committed`). */
  get end(): number {
    return this.#entries.at(-1)?.end ?? this.#committed;
  }

  /** Messages added and not yet passed by the committed mark (acknowledged ones behind a pending one included). */
  get size(): number {
    return this.#entries.length - this.#head;
  }

  /** Messages added and not acknowledged yet. */
  get unacked(): number {
    return this.#unacked.size;
  }

  /**
   * Adds the next message in log order; `end` is the position just after it (offset + 1, a line's end byte). Each
   * item is added once (it is how `ack` finds it).
   * @throws RangeError when `end` is before the end of the previous message, or the item is already in the window.
   */
  add(item: T, end: number): void {
    this.#check(end);
    if (this.#unacked.has(item)) throw new RangeError('AckWindow.add: this item is already in the window');
    const entry: Entry<T> = { item, end, acked: false };
    this.#entries.push(entry);
    this.#unacked.set(item, entry);
  }

  /**
   * Passes a stretch of the log that holds nothing to hand out (a blank line, a Kafka transaction marker, an
   * offset removed by compaction): the mark moves over it once everything before it is acknowledged.
   * @throws RangeError when `end` is before the end of the previous message.
   */
  skip(end: number): void {
    this.#check(end);
    if (this.size === 0) this.#committed = end;
    else this.#entries.push({ item: undefined, end, acked: true });
  }

  /** Whether `item` was added and is not acknowledged yet. */
  has(item: T): boolean {
    return this.#unacked.has(item);
  }

  /**
   * Marks `item` acknowledged and advances over the acknowledged prefix. Returns true when the mark moved; an item
   * not in the window (never added, acknowledged already, forgotten by `reset`) changes nothing.
   */
  ack(item: T): boolean {
    const entry = this.#unacked.get(item);
    if (entry === undefined) return false;
    this.#unacked.delete(item);
    entry.acked = true;
    return this.#advance();
  }

  /** The items not acknowledged yet, in log order. */
  pending(): T[] {
    const items: T[] = [];
    for (let i = this.#head; i < this.#entries.length; i++) {
      const entry = this.#entries[i]!;
      if (!entry.acked) items.push(entry.item as T);
    }
    return items;
  }

  /** Forgets everything and starts again at `committed` (the log was replaced, a partition was reassigned). */
  reset(committed = 0): void {
    this.#entries = [];
    this.#head = 0;
    this.#committed = committed;
    this.#unacked = new Map();
  }

  #check(end: number): void {
    if (!(end >= this.end)) {
      throw new RangeError(`AckWindow: positions go forward (got ${end} after ${this.end})`);
    }
  }

  #advance(): boolean {
    let moved = false;
    while (this.#head < this.#entries.length && this.#entries[this.#head]!.acked) {
      this.#committed = this.#entries[this.#head]!.end;
      this.#head++;
      moved = true;
    }
    // Compact now and then: the array only grows at its end.
    if (this.#head === this.#entries.length) {
      this.#entries = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
    return moved;
  }
}
