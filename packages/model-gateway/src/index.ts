export * from "./assignment-source.js";
export * from "./bucket-consumers.js";
export * from "./config.js";
export * from "./lag-metric.js";
export * from "./model-gateway.js";
export * from "./record-processor.js";
