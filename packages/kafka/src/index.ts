export * from "./co-partitioned-assigner.js";
export * from "./errors.js";
export * from "./kafkajs-bus.js";
export * from "./security.js";
export * from "./settings.js";
