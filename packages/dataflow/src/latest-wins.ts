/**
 * Serialises changes per key with "latest wins": for one key at most one change runs at a time; targets set while it
 * runs wait in a single slot, so a burst (v2, v3, v4 while v1 drains) runs only the newest. Keys are independent: a
 * pipeline draining for 15 s does not hold up another pipeline's start.
 */
export interface LatestWinsOptions<T> {
  /**
   * Brings `key` to `target` (`undefined`: nothing runs for it). `superseded` aborts once a different target is set
   * for the key: waits that may be cut short (fetching a spec, a retry backoff) end on it; a drain should not.
   * A throw is passed to `onError`; the next target for the key still runs.
   */
  run(key: string, target: T | undefined, superseded: AbortSignal): Promise<void>;
  /** Whether two targets are the same change (setting the same one again does nothing). */
  same(a: T | undefined, b: T | undefined): boolean;
  onError?(key: string, err: unknown): void;
}

export interface LatestWins<T> {
  /** Asks for `key` to become `target`. */
  set(key: string, target: T | undefined): void;
  /** The target last set for each key (`undefined` targets are kept until their change has run). */
  targets(): Map<string, T | undefined>;
  /** Resolves once no change is running or waiting. */
  idle(): Promise<void>;
}

interface Slot<T> {
  /** The target last set, running or waiting. */
  latest: T | undefined;
  /** True while a target waits behind the running change. */
  waiting: boolean;
  superseded: AbortController;
  loop: Promise<void>;
}

export function createLatestWins<T>(options: LatestWinsOptions<T>): LatestWins<T> {
  const slots = new Map<string, Slot<T>>();

  async function drive(key: string, slot: Slot<T>): Promise<void> {
    while (slot.waiting) {
      slot.waiting = false;
      const target = slot.latest;
      slot.superseded = new AbortController();
      try {
        await options.run(key, target, slot.superseded.signal);
      } catch (err) {
        options.onError?.(key, err);
      }
    }
    // Nothing more asked: a key brought to "nothing" is forgotten; one that runs something keeps its target.
    if (slot.latest === undefined) slots.delete(key);
  }

  return {
    set(key, target) {
      const slot = slots.get(key);
      if (slot === undefined) {
        if (target === undefined) return;
        const created: Slot<T> = {
          latest: target,
          waiting: true,
          superseded: new AbortController(),
          loop: Promise.resolve(),
        };
        slots.set(key, created);
        created.loop = drive(key, created);
        return;
      }
      if (options.same(slot.latest, target)) return;
      slot.latest = target;
      slot.superseded.abort();
      if (slot.waiting) return;
      slot.waiting = true;
      // The loop may be between its last check and its end: chain a new one after it either way.
      slot.loop = slot.loop.then(() => {
        if (slots.get(key) !== slot) {
          // The old loop finished and forgot the key (it had been brought to nothing): start over.
          if (slot.waiting && slot.latest !== undefined) {
            slots.set(key, slot);
            return drive(key, slot);
          }
          return;
        }
        return drive(key, slot);
      });
    },
    targets() {
      return new Map([...slots].map(([key, slot]) => [key, slot.latest]));
    },
    async idle() {
      for (;;) {
        const loops = [...slots.values()].map((s) => s.loop);
        await Promise.all(loops);
        const again = [...slots.values()].map((s) => s.loop);
        if (again.length === loops.length && again.every((l, i) => l === loops[i])) return;
      }
    },
  };
}
