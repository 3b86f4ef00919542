export * from "./bucket-consumers.js";
export * from "./errors.js";
export * from "./record-processor.js";
