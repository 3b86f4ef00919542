export * from "./compile.js";
export * from "./config.js";
export * from "./errors.js";
export * from "./join-state.js";
export * from "./latest-wins.js";
export * from "./scheduler-specs.js";
export * from "./worker.js";
