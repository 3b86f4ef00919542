// The process supervisor, its restart rule and the scheduler client moved to @tern/control (the long-lived container
// runs them too); re-exported so the dev stack's users keep one import.
export {
  type ControlClient,
  type ControlClientOptions,
  createControlClient,
  createRestartPolicy,
  createSupervisor,
  type ExitInfo,
  type ModelSummary,
  type ProcessSpec,
  type RestartDecision,
  type RestartPolicy,
  type RestartPolicyOptions,
  readLogTail,
  type ServerSummary,
  type SupervisedProcess,
  type Supervisor,
  type SupervisorOptions,
  toWatchEvent,
  type WatchEvent,
} from "@tern/control";
export * from "./agent-plan.js";
export * from "./components.js";
export * from "./config.js";
export * from "./dev-stack.js";
export * from "./dynamodb-instance.js";
export * from "./dynamodb-local.js";
export * from "./dynamodb-probe.js";
export * from "./kafka-broker.js";
export * from "./local-controller.js";
export * from "./lock.js";
export * from "./ports.js";
export * from "./samples.js";
export * from "./tools.js";
export * from "./wait-for.js";
