import { type EcsDeploymentConfiguration, ecsDeploymentConfiguration } from "./deployment-strategy.js";
import { agentRuntime, type DesiredServer } from "./server-follower.js";

/**
 * The ECS controller's decision: what to do with each agent service so that every Server has one service
 * `tern-<stage>-<server>` whose desired count is the Server's replicas and whose deployment configuration is the
 * Server's deploymentStrategy (deployment-strategy.ts). A pure function of the Servers and the
 * services ECS reports, so every case is a unit test; ecs-controller.ts carries it out.
 */

/** An agent service as ECS describes it (only ours: named `tern-<stage>-…`). */
export interface ExistingService {
  name: string;
  /** ECS's status: `ACTIVE`, `DRAINING` (being deleted) or `INACTIVE` (deleted). */
  status: string;
  desiredCount: number;
  taskDefinition: string;
  /** As ECS reports it; absent when it reports none (moto, for a service it created). */
  deploymentConfiguration?: { minimumHealthyPercent?: number; maximumPercent?: number };
}

/** The task definition a Server's service should run: its base (by server type) and the variables that make it that Server's agents. */
export interface WantedTaskDefinition {
  /** The base task definition named by config for the server type (family, family:revision or ARN). */
  base: string;
  /** The variable naming `base`, for error messages. */
  variable: string;
  environment: Record<string, string>;
}

export type EcsAction =
  | {
      action: "create";
      service: string;
      server: DesiredServer;
      desiredCount: number;
      deploymentConfiguration: EcsDeploymentConfiguration;
    }
  | {
      action: "update";
      service: string;
      server: DesiredServer;
      desiredCount: number;
      deploymentConfiguration: EcsDeploymentConfiguration;
      /**
       * The service runs a stale task definition: register the Server's and move the service to it (ECS then replaces
       * the tasks as `deploymentConfiguration` allows). False: only the count or the configuration changes, and the
       * service keeps its revision, so its tasks are not replaced.
       */
      newRevision: boolean;
    }
  /** Scale to 0 (the agents drain on SIGTERM), then delete. */
  | { action: "delete"; service: string }
  /** Nothing ECS can do now, and why (a service still draining from a delete; no task definition for the type). */
  | { action: "wait"; service: string; reason: string };

/** `tern-<stage>-<server>`. Server names are letters, digits, `-` and `_`, so the name is a valid ECS service name. */
export function serviceName(stage: string, server: string): string {
  return `tern-${stage}-${server}`;
}

/** Which task-definition variable serves a server type, and its value (undefined when unset). */
export function taskDefinitionFor(
  serverConfig: string,
  taskDefinitions: { "tern-onnx": string; mlserver?: string },
): { variable: string; base: string | undefined } {
  return agentRuntime(serverConfig) === "mlserver"
    ? { variable: "TERN_ECS_TASK_DEFINITION_MLSERVER", base: taskDefinitions.mlserver }
    : { variable: "TERN_ECS_TASK_DEFINITION_TERN_ONNX", base: taskDefinitions["tern-onnx"] };
}

/** The variables {@link agentEnvironment} sets. */
export const AGENT_VARIABLES = [
  "TERN_SCHEDULER_URL",
  "TERN_AGENT_SERVER",
  "TERN_AGENT_SERVER_TYPE",
  "TERN_AGENT_CAPABILITIES",
] as const;

/** The variables an agent task needs to register as a replica of `server` (the local controller gives agents the same). */
export function agentEnvironment(
  server: DesiredServer,
  schedulerUrl: string,
): Record<(typeof AGENT_VARIABLES)[number], string> {
  return {
    TERN_SCHEDULER_URL: schedulerUrl,
    TERN_AGENT_SERVER: server.server,
    TERN_AGENT_SERVER_TYPE: agentRuntime(server.serverConfig),
    TERN_AGENT_CAPABILITIES: server.capabilities.join(","),
  };
}

/**
 * Plans one pass. `needsUpdate(service, server)` says whether an existing service runs the wrong task definition (the
 * controller knows which revision it registered for which Server); a changed desired count, or a deployment
 * configuration other than the Server's strategy gives for its replicas, is an update too (one that keeps the revision).
 *
 * - A Server with no ACTIVE service gets one created (even with 0 replicas: it exists as long as the Server does),
 *   unless its old service is still DRAINING from a delete: then it waits.
 * - A Server whose type has no task definition configured waits, with the variable to set.
 * - An ACTIVE service of ours with no Server is deleted.
 */
export function planEcsServices(
  stage: string,
  desired: readonly DesiredServer[],
  existing: readonly ExistingService[],
  taskDefinitions: { "tern-onnx": string; mlserver?: string },
  needsUpdate: (service: ExistingService, server: DesiredServer) => boolean,
): EcsAction[] {
  const byName = new Map(existing.map((s) => [s.name, s]));
  const wanted = new Set<string>();
  const actions: EcsAction[] = [];
  for (const server of [...desired].sort((a, b) => (a.server < b.server ? -1 : a.server > b.server ? 1 : 0))) {
    const service = serviceName(stage, server.server);
    wanted.add(service);
    const { variable, base } = taskDefinitionFor(server.serverConfig, taskDefinitions);
    if (base === undefined) {
      actions.push({
        action: "wait",
        service,
        reason: `server ${server.server} (serverConfig ${server.serverConfig}) has no task definition: set ${variable}`,
      });
      continue;
    }
    const current = byName.get(service);
    const deploymentConfiguration = ecsDeploymentConfiguration(server.deploymentStrategy, server.replicas);
    if (current === undefined || current.status === "INACTIVE") {
      actions.push({ action: "create", service, server, desiredCount: server.replicas, deploymentConfiguration });
    } else if (current.status === "DRAINING") {
      actions.push({ action: "wait", service, reason: `service ${service} is still being deleted` });
    } else {
      const newRevision = needsUpdate(current, server);
      const reported = current.deploymentConfiguration;
      const configured =
        reported?.minimumHealthyPercent === deploymentConfiguration.minimumHealthyPercent &&
        reported?.maximumPercent === deploymentConfiguration.maximumPercent;
      if (newRevision || !configured || current.desiredCount !== server.replicas) {
        actions.push({
          action: "update",
          service,
          server,
          desiredCount: server.replicas,
          deploymentConfiguration,
          newRevision,
        });
      }
    }
  }
  for (const service of existing) {
    if (!wanted.has(service.name) && service.status === "ACTIVE") {
      actions.push({ action: "delete", service: service.name });
    }
  }
  return actions;
}
