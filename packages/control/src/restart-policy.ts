/** Options of {@link createRestartPolicy}. */
export interface RestartPolicyOptions {
  /**
   * Wait before the first restart; it doubles with each further crash inside the window.
   * @default 500
   */
  initialDelayMs?: number;
  /** @default 30000 */
  maxDelayMs?: number;
  /**
   * Restarts allowed within `windowMs`; the crash after them gives up.
   * @default 5
   */
  maxRestarts?: number;
  /** @default 60000 */
  windowMs?: number;
}

/** What to do about one crash. */
export type RestartDecision =
  | { action: "restart"; delayMs: number; crashesInWindow: number }
  | { action: "give-up"; crashesInWindow: number };

/** The crash history of one supervised process and the rule applied to it. */
export interface RestartPolicy {
  /** Records a crash at `now` (epoch ms) and decides. */
  crashed(now: number): RestartDecision;
  /** Crashes recorded so far, all time. */
  readonly crashes: number;
  /** The rule, for messages: "gives up after 6 crashes within 60 s". */
  readonly rule: string;
}

/**
 * Restart with exponential backoff; give up once a process crashes more than `maxRestarts` times within `windowMs`.
 * Crashes older than the window are forgotten, so a process that crashes now and then is always restarted, and its
 * delay starts small again.
 */
export function createRestartPolicy(options: RestartPolicyOptions = {}): RestartPolicy {
  const initialDelayMs = options.initialDelayMs ?? 500;
  const maxDelayMs = options.maxDelayMs ?? 30_000;
  const maxRestarts = options.maxRestarts ?? 5;
  const windowMs = options.windowMs ?? 60_000;
  let recent: number[] = [];
  let crashes = 0;
  return {
    crashed(now: number): RestartDecision {
      crashes++;
      recent = [...recent.filter((t) => now - t < windowMs), now];
      if (recent.length > maxRestarts) return { action: "give-up", crashesInWindow: recent.length };
      const delayMs = Math.min(maxDelayMs, initialDelayMs * 2 ** (recent.length - 1));
      return { action: "restart", delayMs, crashesInWindow: recent.length };
    },
    get crashes() {
      return crashes;
    },
    rule: `gives up after ${maxRestarts + 1} crashes within ${windowMs / 1000} s`,
  };
}
