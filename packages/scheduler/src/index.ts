// The public surface of @tern/scheduler. The process entry is main.ts (not exported: importing it would start a server).
export * from "./app.js";
export * from "./build-routes.js";
export * from "./config.js";
export * from "./lease.js";
export * from "./model-spec.js";
export * from "./persistence.js";
export * from "./placement.js";
export * from "./reconcile.js";
export * from "./records.js";
export * from "./scheduler.js";
export * from "./server-types.js";
export * from "./service.js";
export * from "./store/dynamodb-store.js";
export * from "./store/memory-store.js";
export * from "./views.js";
