import { TernError } from "@tern/core";

/** Options of {@link readEcsTaskIpv4}. */
export interface EcsMetadataOptions {
  /** The value of ECS_CONTAINER_METADATA_URI_V4, which the ECS container agent sets in every container. */
  metadataUri: string;
  /** Deadline of the whole read. @default 5000 */
  timeoutMs?: number;
}

interface TaskMetadata {
  Containers?: Array<{ Name?: string; Networks?: Array<{ IPv4Addresses?: string[] }> }>;
}

/**
 * The task's private IPv4 address, from the ECS task metadata endpoint v4 (`<metadataUri>/task`,
 * `Containers[].Networks[0].IPv4Addresses[0]`). In `awsvpc` mode (Fargate) every container of a task shares the task's
 * network interface, so the first address found is the one other tasks reach this agent at.
 * @throws TernError `timeout` past the deadline; `unavailable` on an error status, a body that is not the documented
 * shape, or a task without an IPv4 address.
 */
export async function readEcsTaskIpv4(options: EcsMetadataOptions): Promise<string> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const url = `${options.metadataUri.replace(/\/+$/, "")}/task`;
  let body: unknown;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) {
      throw new TernError("unavailable", `ECS task metadata endpoint ${url} answered ${res.status}`, {
        retriable: true,
      });
    }
    body = await res.json();
  } catch (err) {
    if (err instanceof TernError) throw err;
    const name = (err as Error).name;
    if (name === "TimeoutError" || name === "AbortError") {
      throw new TernError("timeout", `ECS task metadata endpoint ${url} did not answer within ${timeoutMs} ms`, {
        cause: err,
        retriable: true,
      });
    }
    const cause = (err as { cause?: { message?: string } }).cause?.message;
    const why = `${(err as Error).message}${cause ? ` (${cause})` : ""}`;
    throw new TernError("unavailable", `ECS task metadata endpoint ${url} failed: ${why}`, {
      cause: err,
      retriable: true,
    });
  }
  for (const container of (body as TaskMetadata | null)?.Containers ?? []) {
    const ip = container?.Networks?.[0]?.IPv4Addresses?.[0];
    if (typeof ip === "string" && ip.length > 0) return ip;
  }
  throw new TernError(
    "unavailable",
    `ECS task metadata endpoint ${url} shows no IPv4 address for this task (Containers[].Networks[0].IPv4Addresses is empty or missing): ` +
      "TERN_AGENT_ADVERTISE_HOST=ecs needs the awsvpc network mode",
  );
}
