export * from "./compile.js";
export * from "./errors.js";
export * from "./host.js";
export * from "./join-state.js";
export * from "./runner.js";
export * from "./wire-tensors.js";
