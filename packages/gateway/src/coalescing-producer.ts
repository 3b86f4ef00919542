import type { BusProducer, OutgoingMessage } from "@tern/core";

/** Inputs of {@link createCoalescingProducer}. */
export interface CoalescingProducerOptions {
  /**
   * Upper bound on the value bytes of one coalesced send (a record larger than this goes alone): the broker refuses a
   * record batch above its `max.message.bytes` (1 MiB by default), and one refusal would fail every caller in it.
   * @default 524288
   */
  maxBatchBytes?: number;
}

interface Waiting {
  messages: OutgoingMessage[];
  bytes: number;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * A producer that sends the records of many callers together: while a send to a topic is in flight, the records asked
 * for meanwhile wait and then go as ONE send, and each caller's promise settles with the send that carried its
 * records. Nothing waits when the topic is idle, so a lone request pays no delay.
 *
 * Why: the broker handles one connection's requests in turn, so a gateway producing one record per HTTP request gets
 * at most one produce round trip's worth of requests through at a time, and every stage after it then works in
 * batches of one (bench/results/pipelines.md). Coalesced, a round trip carries everything that arrived during the
 * previous one. Records of different topics never share a send, so a missing topic (a pipeline deleted meanwhile)
 * fails only the requests to it.
 */
export function createCoalescingProducer(producer: BusProducer, options: CoalescingProducerOptions = {}): BusProducer {
  const maxBatchBytes = options.maxBatchBytes ?? 512 * 1024;
  const topics = new Map<string, { inFlight: boolean; queue: Waiting[] }>();

  function flush(topic: string): void {
    const state = topics.get(topic)!;
    if (state.inFlight || state.queue.length === 0) return;
    const batch: Waiting[] = [state.queue.shift()!];
    let bytes = batch[0]!.bytes;
    while (state.queue.length > 0 && bytes + state.queue[0]!.bytes <= maxBatchBytes) {
      const next = state.queue.shift()!;
      bytes += next.bytes;
      batch.push(next);
    }
    state.inFlight = true;
    producer
      .send(batch.flatMap((w) => w.messages))
      .then(
        () => {
          for (const w of batch) w.resolve();
        },
        (err: unknown) => {
          for (const w of batch) w.reject(err);
        },
      )
      .finally(() => {
        state.inFlight = false;
        if (state.queue.length === 0) topics.delete(topic);
        else flush(topic);
      });
  }

  function sendToTopic(topic: string, messages: OutgoingMessage[]): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let state = topics.get(topic);
      if (!state) {
        state = { inFlight: false, queue: [] };
        topics.set(topic, state);
      }
      const bytes = messages.reduce((sum, m) => sum + m.value.byteLength, 0);
      state.queue.push({ messages, bytes, resolve, reject });
      flush(topic);
    });
  }

  return {
    async send(messages) {
      if (messages.length === 0) return;
      const byTopic = new Map<string, OutgoingMessage[]>();
      for (const m of messages) byTopic.set(m.topic, [...(byTopic.get(m.topic) ?? []), m]);
      await Promise.all([...byTopic].map(([topic, records]) => sendToTopic(topic, records)));
    },
    close: () => producer.close(),
  };
}
