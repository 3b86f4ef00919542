import {
  type ContainerDefinition,
  CreateServiceCommand,
  DeleteServiceCommand,
  DescribeServicesCommand,
  DescribeTaskDefinitionCommand,
  ECSClient,
  type KeyValuePair,
  paginateListServices,
  RegisterTaskDefinitionCommand,
  type TaskDefinition,
  UpdateServiceCommand,
} from "@aws-sdk/client-ecs";
import { TernError } from "@tern/core";
import type { EcsSettings } from "./config.js";
import type { ControlClient } from "./control-client.js";
import type { EcsDeploymentConfiguration } from "./deployment-strategy.js";
import {
  AGENT_VARIABLES,
  agentEnvironment,
  type EcsAction,
  type ExistingService,
  planEcsServices,
  serviceName,
  taskDefinitionFor,
} from "./ecs-plan.js";
import { errorText, fromAwsError } from "./errors.js";
import { createServerFollower, type DesiredServer } from "./server-follower.js";

/**
 * The ECS adapter of the controller port (DESIGN §5): the AWS counterpart of the dev stack's local controller. It
 * follows the scheduler's Servers the same way (`createServerFollower`) and keeps one ECS service per Server,
 * `tern-<stage>-<server>`, with `desiredCount` = the Server's replicas (the spec's, or what server autoscaling set).
 *
 * Each service runs a task definition of its own, family `tern-<stage>-<server>`: the server type's base definition
 * (TERN_ECS_TASK_DEFINITION_TERN_ONNX / _MLSERVER) with the agent container's environment extended by what makes its
 * tasks register as that Server — the same variables the local controller gives an agent process. (An ECS service has
 * no per-service container overrides; those exist only for RunTask.) A revision is registered only when that
 * environment or the base revision changed, and a service is moved to one only then, so neither a restart of this
 * controller nor a scale after it rolls the agents.
 *
 * How ECS replaces the tasks when it does move a service is the Server's `spec.deploymentStrategy`, sent as the
 * service's `deploymentConfiguration` (deployment-strategy.ts) on create and on every update; one that differs from
 * what DescribeServices reports is an update of its own.
 *
 * Deleting a Server scales its service to 0 (the agents drain on SIGTERM), then deletes it. A refused call is logged
 * with ECS's reason and kept in `services()`; the pass is retried after `retryMs`.
 */

/** Tags that mark a service (and task definition) as this installation's. */
const STAGE_TAG = "tern:stage";
const SERVER_TAG = "tern:server";
/** Kept in the registered definition's environment: which base revision it was made from. */
const BASE_VARIABLE = "TERN_ECS_BASE_TASK_DEFINITION";

export interface EcsControllerLogger {
  info(message: string): void;
  warn(message: string): void;
}

export interface EcsControllerOptions {
  settings: EcsSettings;
  client: ControlClient;
  logger: EcsControllerLogger;
  /** Credentials for the ECS client; unset: the SDK's default chain (the task role on AWS). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Retry of a pass that failed somewhere. @default 5000 */
  retryMs?: number;
}

/** One Server's service as the controller last handled it. */
export interface EcsServiceStatus {
  server: string;
  service: string;
  /** `ready`: the service matches the Server; `waiting`: nothing to do yet (reason says why); `failed`: ECS refused. */
  state: "ready" | "waiting" | "failed";
  desiredCount?: number;
  reason?: string;
}

export interface EcsController {
  /** Starts following the scheduler. */
  start(): void;
  /** Resolves after the first pass over a successful list of the Servers (whatever its outcome). */
  synced(): Promise<void>;
  /** Runs one pass now (after any pass in progress). */
  reconcile(): Promise<void>;
  services(): EcsServiceStatus[];
  /** Stops following. Services are left as they are: the next control task takes them over. Idempotent. */
  stop(): Promise<void>;
}

export function createEcsController(options: EcsControllerOptions): EcsController {
  const { settings, logger } = options;
  const retryMs = options.retryMs ?? 5000;
  const ecs = new ECSClient({
    region: settings.region,
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    ...(options.credentials ? { credentials: options.credentials } : {}),
    maxAttempts: 3,
  });
  const cluster = settings.cluster;
  const prefix = `tern-${settings.stage}-`;
  let desired: DesiredServer[] | undefined;
  let stopped = false;
  const status = new Map<string, EcsServiceStatus>();
  /** Task definition ARN → the fingerprint of what it carries (base revision + agent variables). */
  const fingerprints = new Map<string, string>();
  /** Server → the revision registered for a fingerprint, so an unchanged Server reuses it. */
  const registered = new Map<string, { fingerprint: string; arn: string }>();
  let markSynced: () => void = () => undefined;
  const syncedOnce = new Promise<void>((resolve) => {
    markSynced = resolve;
  });
  const said = new Map<string, string>();
  const sayOnce = (key: string, message: string): void => {
    if (said.get(key) === message) return;
    said.set(key, message);
    logger.warn(message);
  };

  const follower = createServerFollower({
    client: options.client,
    name: "ECS controller",
    warn: (message) => logger.warn(message),
    resyncMs: settings.resyncMs,
    onServers(servers) {
      if (stopped) return;
      desired = servers;
      reconcile().then(markSynced, (err: unknown) => logger.warn(`ECS controller: pass failed: ${errorText(err)}`));
    },
  });

  async function call<T>(action: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      throw fromAwsError(err, action);
    }
  }

  /** Our services: named `tern-<stage>-…` and tagged with this stage (another stage's prefix may extend ours). */
  async function listServices(): Promise<ExistingService[]> {
    const arns: string[] = [];
    await call(`list services of cluster ${cluster}`, async () => {
      for await (const page of paginateListServices({ client: ecs }, { cluster })) {
        for (const arn of page.serviceArns ?? []) {
          if (arn.slice(arn.lastIndexOf("/") + 1).startsWith(prefix)) arns.push(arn);
        }
      }
    });
    const found: ExistingService[] = [];
    for (let i = 0; i < arns.length; i += 10) {
      const chunk = arns.slice(i, i + 10);
      const out = await call(`describe services of cluster ${cluster}`, () =>
        ecs.send(new DescribeServicesCommand({ cluster, services: chunk, include: ["TAGS"] })),
      );
      for (const s of out.services ?? []) {
        if (!s.serviceName || !(s.tags ?? []).some((t) => t.key === STAGE_TAG && t.value === settings.stage)) continue;
        found.push({
          name: s.serviceName,
          status: s.status ?? "ACTIVE",
          desiredCount: s.desiredCount ?? 0,
          taskDefinition: s.taskDefinition ?? "",
          ...(s.deploymentConfiguration === undefined
            ? {}
            : {
                deploymentConfiguration: {
                  minimumHealthyPercent: s.deploymentConfiguration.minimumHealthyPercent,
                  maximumPercent: s.deploymentConfiguration.maximumPercent,
                },
              }),
        });
      }
    }
    return found;
  }

  async function describeTaskDefinition(name: string, variable?: string): Promise<TaskDefinition> {
    try {
      const out = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: name }));
      if (out.taskDefinition === undefined) throw new Error("no task definition in the answer");
      return out.taskDefinition;
    } catch (err) {
      const e = fromAwsError(err, `describe task definition ${name}`);
      if (variable !== undefined && e.code === "bad_request") {
        throw new TernError("config.invalid", `${variable}: ECS does not know task definition ${name} (${e.message})`, {
          cause: err,
        });
      }
      throw e;
    }
  }

  function agentContainer(definition: TaskDefinition, name: string): ContainerDefinition {
    const containers = definition.containerDefinitions ?? [];
    const container =
      containers.length === 1 ? containers[0] : containers.find((c) => c.name === settings.agentContainer);
    if (container === undefined) {
      throw new TernError(
        "config.invalid",
        `TERN_ECS_AGENT_CONTAINER: task definition ${name} has no container named ${settings.agentContainer} (it has ${containers.map((c) => c.name).join(", ")})`,
      );
    }
    return container;
  }

  function fingerprintOf(environment: Record<string, string>): string {
    return JSON.stringify(Object.entries(environment).sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  /** What a Server's task definition must carry, with the base resolved to its current revision. */
  async function wantedDefinition(
    server: DesiredServer,
    bases: Map<string, TaskDefinition>,
  ): Promise<{ base: TaskDefinition; environment: Record<string, string>; fingerprint: string }> {
    const { variable, base: name } = taskDefinitionFor(server.serverConfig, settings.taskDefinitions);
    if (name === undefined) throw new TernError("config.invalid", `${variable}: required for ${server.server}`);
    let base = bases.get(name);
    if (base === undefined) {
      base = await describeTaskDefinition(name, variable);
      bases.set(name, base);
    }
    const environment = {
      ...agentEnvironment(server, settings.schedulerUrl),
      [BASE_VARIABLE]: base.taskDefinitionArn ?? name,
    };
    return { base, environment, fingerprint: fingerprintOf(environment) };
  }

  /** The fingerprint of a registered definition (ours carry the variables; anything else never matches). */
  async function fingerprintOfArn(arn: string): Promise<string> {
    const known = fingerprints.get(arn);
    if (known !== undefined) return known;
    const definition = await describeTaskDefinition(arn);
    const env = new Map((agentContainer(definition, arn).environment ?? []).map((e) => [e.name, e.value]));
    const keys = [...AGENT_VARIABLES, BASE_VARIABLE];
    const fingerprint = fingerprintOf(Object.fromEntries(keys.map((k) => [k, env.get(k) ?? ""])));
    fingerprints.set(arn, fingerprint);
    return fingerprint;
  }

  async function registerDefinition(
    server: DesiredServer,
    wanted: { base: TaskDefinition; environment: Record<string, string>; fingerprint: string },
  ): Promise<string> {
    const cached = registered.get(server.server);
    if (cached?.fingerprint === wanted.fingerprint) return cached.arn;
    const { base } = wanted;
    const container = agentContainer(base, base.taskDefinitionArn ?? "");
    const environment: KeyValuePair[] = [
      ...(container.environment ?? []).filter((e) => e.name === undefined || !(e.name in wanted.environment)),
      ...Object.entries(wanted.environment).map(([name, value]) => ({ name, value })),
    ];
    const family = serviceName(settings.stage, server.server);
    const out = await call(`register task definition ${family}`, () =>
      ecs.send(
        new RegisterTaskDefinitionCommand({
          family,
          containerDefinitions: (base.containerDefinitions ?? []).map((c) =>
            c === container ? { ...c, environment } : c,
          ),
          taskRoleArn: base.taskRoleArn,
          executionRoleArn: base.executionRoleArn,
          networkMode: base.networkMode,
          volumes: base.volumes,
          placementConstraints: base.placementConstraints,
          requiresCompatibilities: base.requiresCompatibilities,
          cpu: base.cpu,
          memory: base.memory,
          runtimePlatform: base.runtimePlatform,
          ephemeralStorage: base.ephemeralStorage,
          tags: [
            { key: STAGE_TAG, value: settings.stage },
            { key: SERVER_TAG, value: server.server },
          ],
        }),
      ),
    );
    const arn = out.taskDefinition?.taskDefinitionArn;
    if (arn === undefined) throw new TernError("internal", `register task definition ${family}: no ARN in the answer`);
    registered.set(server.server, { fingerprint: wanted.fingerprint, arn });
    fingerprints.set(arn, wanted.fingerprint);
    logger.info(`ECS controller: registered ${arn} for server ${server.server}`);
    return arn;
  }

  async function apply(action: EcsAction, bases: Map<string, TaskDefinition>): Promise<void> {
    switch (action.action) {
      case "wait":
        return;
      case "create":
      case "update": {
        // A service whose revision is right keeps it: registering again (an identical definition, after a restart of
        // this controller emptied its cache) would move it to a new revision, and ECS would replace every agent task.
        const taskDefinition =
          action.action === "update" && !action.newRevision
            ? undefined
            : await registerDefinition(action.server, await wantedDefinition(action.server, bases));
        if (action.action === "create") {
          await call(`create service ${action.service}`, () =>
            ecs.send(
              new CreateServiceCommand({
                cluster,
                serviceName: action.service,
                taskDefinition,
                desiredCount: action.desiredCount,
                launchType: "FARGATE",
                networkConfiguration: {
                  awsvpcConfiguration: {
                    subnets: settings.subnets,
                    securityGroups: settings.securityGroups,
                    assignPublicIp: settings.assignPublicIp ? "ENABLED" : "DISABLED",
                  },
                },
                // The Server's deploymentStrategy; without one, new tasks start before old ones stop (100/200).
                deploymentConfiguration: action.deploymentConfiguration,
                tags: [
                  { key: STAGE_TAG, value: settings.stage },
                  { key: SERVER_TAG, value: action.server.server },
                ],
                propagateTags: "SERVICE",
                enableECSManagedTags: true,
              }),
            ),
          );
          logger.info(
            `ECS controller: created service ${action.service} (desired count ${action.desiredCount}, ${deploymentText(action.deploymentConfiguration)})`,
          );
        } else {
          await call(`update service ${action.service}`, () =>
            ecs.send(
              new UpdateServiceCommand({
                cluster,
                service: action.service,
                desiredCount: action.desiredCount,
                ...(taskDefinition === undefined ? {} : { taskDefinition }),
                deploymentConfiguration: action.deploymentConfiguration,
              }),
            ),
          );
          logger.info(
            `ECS controller: service ${action.service} desired count ${action.desiredCount}, ${deploymentText(action.deploymentConfiguration)}${taskDefinition === undefined ? "" : `, moved to ${taskDefinition}`}`,
          );
        }
        return;
      }
      case "delete": {
        // Scale to 0 first so the agents get SIGTERM and drain; a delete without force needs it anyway.
        await call(`scale service ${action.service} to 0`, () =>
          ecs.send(new UpdateServiceCommand({ cluster, service: action.service, desiredCount: 0 })),
        );
        await call(`delete service ${action.service}`, () =>
          ecs.send(new DeleteServiceCommand({ cluster, service: action.service })),
        );
        logger.info(`ECS controller: deleted service ${action.service}`);
      }
    }
  }

  async function pass(): Promise<boolean> {
    if (desired === undefined) return true;
    const servers = desired;
    let ok = true;
    let existing: ExistingService[];
    try {
      existing = await listServices();
      said.delete("list");
    } catch (err) {
      sayOnce("list", `ECS controller: ${errorText(err)}; retrying in ${retryMs} ms`);
      return false;
    }
    // Which existing services run a definition that no longer matches their Server (base revision or variables).
    const bases = new Map<string, TaskDefinition>();
    const stale = new Set<string>();
    for (const server of servers) {
      const service = existing.find((s) => s.name === serviceName(settings.stage, server.server));
      if (service === undefined || service.status !== "ACTIVE") continue;
      if (taskDefinitionFor(server.serverConfig, settings.taskDefinitions).base === undefined) continue;
      try {
        const wanted = await wantedDefinition(server, bases);
        if ((await fingerprintOfArn(service.taskDefinition)) !== wanted.fingerprint) stale.add(service.name);
      } catch (err) {
        ok = false;
        record(server.server, service.name, { state: "failed", reason: errorText(err) });
      }
    }
    const actions = planEcsServices(settings.stage, servers, existing, settings.taskDefinitions, (s) =>
      stale.has(s.name),
    );
    const touched = new Set<string>();
    for (const action of actions) {
      if (stopped) return true;
      const server = action.action === "delete" || action.action === "wait" ? undefined : action.server.server;
      touched.add(action.service);
      try {
        await apply(action, bases);
        if (action.action === "delete") status.delete(action.service);
        else if (action.action === "wait") {
          const name = servers.find((s) => serviceName(settings.stage, s.server) === action.service)?.server ?? "";
          record(name, action.service, { state: "waiting", reason: action.reason });
          sayOnce(action.service, `ECS controller: ${action.reason}`);
          if (action.reason.includes("being deleted")) ok = false;
        } else {
          record(server ?? "", action.service, { state: "ready", desiredCount: action.desiredCount });
          said.delete(action.service);
        }
      } catch (err) {
        ok = false;
        const reason = errorText(err);
        const name = server ?? action.service.slice(prefix.length);
        record(name, action.service, { state: "failed", reason });
        sayOnce(action.service, `ECS controller: ${reason}; retrying in ${retryMs} ms`);
      }
    }
    // Services that needed nothing are ready as they are.
    for (const server of servers) {
      const service = serviceName(settings.stage, server.server);
      if (touched.has(service) || status.get(service)?.state === "failed") continue;
      record(server.server, service, { state: "ready", desiredCount: server.replicas });
    }
    for (const service of [...status.keys()]) {
      if (!servers.some((s) => serviceName(settings.stage, s.server) === service)) status.delete(service);
    }
    return ok;
  }

  function record(server: string, service: string, fields: Omit<EcsServiceStatus, "server" | "service">): void {
    status.set(service, { server, service, ...fields });
  }

  let running: Promise<void> | undefined;
  let again = false;
  let retry: NodeJS.Timeout | undefined;
  function reconcile(): Promise<void> {
    if (running !== undefined) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          clearTimeout(retry);
          const ok = await pass();
          if (!ok && !stopped) {
            retry = setTimeout(() => void reconcile(), retryMs);
            retry.unref();
          }
        } while (again && !stopped);
      } finally {
        running = undefined;
      }
    })();
    return running;
  }

  let stopping: Promise<void> | undefined;
  return {
    start() {
      follower.start();
    },
    synced: () => syncedOnce,
    reconcile,
    services: () => [...status.values()].sort((a, b) => (a.service < b.service ? -1 : 1)),
    stop() {
      stopping ??= (async () => {
        stopped = true;
        follower.stop();
        clearTimeout(retry);
        await running?.catch(() => undefined);
        ecs.destroy();
      })();
      return stopping;
    },
  };
}

/** `deployment 100-200%`: the healthy minimum and the maximum a replacement of the service's tasks keeps to. */
function deploymentText(config: EcsDeploymentConfiguration): string {
  return `deployment ${config.minimumHealthyPercent}-${config.maximumPercent}%`;
}
