// kafkajs 2.2.4's per-connection request queue, which src/kafkajs-bus.ts corrects (see fixRequestQueueIdleLoop there).
// Only the members that correction touches are typed.
declare module "kafkajs/src/network/requestQueue/index.js" {
  interface RequestQueueOptions {
    maxInFlightRequests: number | null;
    requestTimeout: number;
    enforceRequestTimeout: boolean;
    clientId: string;
    broker: string;
    logger: { debug(...args: unknown[]): void; warn(...args: unknown[]): void; error(...args: unknown[]): void };
  }
  class RequestQueue {
    constructor(options: RequestQueueOptions);
    pending: unknown[];
    throttledUntil: number;
    throttleCheckTimeoutId: ReturnType<typeof setTimeout> | null;
    checkPendingRequests(): void;
    scheduleCheckPendingRequests(): void;
    destroy(): void;
  }
  export default RequestQueue;
}
