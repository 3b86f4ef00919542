import type { KafkaBusSettingsInput } from "@tern/kafka";

/**
 * Short heartbeats so that members notice a rebalance (another member joining or leaving) within half a second;
 * the session timeout is the broker's floor. Production keeps the documented defaults.
 */
export const testSettings: KafkaBusSettingsInput = {
  consumer: { sessionTimeoutMs: 6_000, heartbeatIntervalMs: 500 },
  adminTimeoutMs: 20_000,
};
