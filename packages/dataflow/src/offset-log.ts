import type { BusBatchContext } from "@tern/core";

/**
 * What a runner still owes on one topic-partition, for at-least-once commits: every record it read, in offset order,
 * with how many unfinished requests still hold it. The committed offset moves over the contiguous prefix that nobody
 * holds, so it never passes the oldest record of a request that is not finished.
 */

/** One record read; `holds` counts the unfinished requests it belongs to (a batch answer belongs to several). */
export interface HeldRecord {
  offset: string;
  holds: number;
  log: OffsetLog;
}

export class OffsetLog {
  private entries: HeldRecord[] = [];
  private head = 0;
  /** The context of the latest batch of this topic-partition: marks made after its handler returned still commit. */
  context: BusBatchContext | undefined;

  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {}

  /** Appends a record (nobody holds it yet). */
  append(offset: string): HeldRecord {
    const record: HeldRecord = { offset, holds: 0, log: this };
    this.entries.push(record);
    return record;
  }

  /** Marks the done prefix through the context (a no-op when it is empty). */
  commit(): void {
    let last: HeldRecord | undefined;
    while (this.head < this.entries.length && this.entries[this.head]!.holds === 0) {
      last = this.entries[this.head]!;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    } else if (this.head === this.entries.length) {
      this.entries = [];
      this.head = 0;
    }
    if (last !== undefined) this.context?.commit(this.topic, this.partition, last.offset);
  }

  /** Records not yet committed (held, or behind one that is). */
  get pending(): number {
    return this.entries.length - this.head;
  }
}
