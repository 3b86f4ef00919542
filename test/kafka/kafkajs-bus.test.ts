import { createKafkaBus } from "@tern/kafka";
import { inject } from "vitest";
import { describeMessageBusContract } from "../../packages/core/tests/contract/message-bus-contract.js";
import { testSettings } from "./test-settings.js";

const brokers = inject("kafkaBrokers");

describeMessageBusContract("Kafka (kafkajs)", {
  createBus: () => createKafkaBus({ brokers, settings: testSettings }),
  timeoutMs: 30_000,
});
