import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { hasCode } from "@tern/core";
import { afterEach, describe, expect, it } from "vitest";
import { loadAgentConfig } from "../../src/config.js";
import { readEcsTaskIpv4 } from "../../src/ecs-metadata.js";

/** A task metadata v4 `/task` answer in the shape AWS documents (fields we do not read trimmed). */
function taskMetadata(ip: string | undefined) {
  return {
    Cluster: "arn:aws:ecs:us-west-2:111122223333:cluster/default",
    TaskARN: "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c",
    Family: "tern-agent",
    Revision: "3",
    DesiredStatus: "RUNNING",
    KnownStatus: "RUNNING",
    LaunchType: "FARGATE",
    Containers: [
      {
        DockerId: "cd189a933e5849daa93386466019ab50-2495160603",
        Name: "agent",
        Image: "111122223333.dkr.ecr.us-west-2.amazonaws.com/tern-agent:latest",
        DesiredStatus: "RUNNING",
        KnownStatus: "RUNNING",
        Type: "NORMAL",
        Networks: [
          {
            NetworkMode: "awsvpc",
            IPv4Addresses: ip === undefined ? [] : [ip],
            AttachmentIndex: 0,
            MACAddress: "0a:ab:cd:ef:12:34",
            IPv4SubnetCIDRBlock: "10.0.0.0/24",
            PrivateDNSName: "ip-10-0-0-108.us-west-2.compute.internal",
            SubnetGatewayIpv4Address: "10.0.0.1/24",
          },
        ],
      },
    ],
  };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => {
      s.closeAllConnections();
      return new Promise((resolve) => s.close(resolve));
    }),
  );
});

/** Stands for the ECS agent's metadata endpoint (which has no emulator); answers GET <base>/task. */
async function metadataEndpoint(
  answer: (path: string) => { status: number; body?: unknown } | "hang",
): Promise<string> {
  const server = createServer((req, res) => {
    const a = answer(req.url ?? "");
    if (a === "hang") return;
    res.writeHead(a.status, { "content-type": "application/json" });
    res.end(a.body === undefined ? "" : JSON.stringify(a.body));
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v4/abc-123`;
}

describe("TERN_AGENT_ADVERTISE_HOST=ecs", () => {
  it("reads the task's private IPv4 from <ECS_CONTAINER_METADATA_URI_V4>/task", async () => {
    const paths: string[] = [];
    const uri = await metadataEndpoint((path) => {
      paths.push(path);
      return { status: 200, body: taskMetadata("10.0.0.108") };
    });
    expect(await readEcsTaskIpv4({ metadataUri: uri, timeoutMs: 2000 })).toBe("10.0.0.108");
    expect(paths).toEqual(["/v4/abc-123/task"]);
  });

  it("fails clearly when the task has no IPv4 address", async () => {
    const uri = await metadataEndpoint(() => ({ status: 200, body: taskMetadata(undefined) }));
    const err = await readEcsTaskIpv4({ metadataUri: uri, timeoutMs: 2000 }).catch((e: unknown) => e);
    expect(hasCode(err, "unavailable")).toBe(true);
    expect((err as Error).message).toMatch(/no IPv4 address.*Containers\[\]\.Networks\[0\]\.IPv4Addresses/);
  });

  it("fails clearly on an error status", async () => {
    const uri = await metadataEndpoint(() => ({ status: 500, body: { error: "boom" } }));
    const err = await readEcsTaskIpv4({ metadataUri: uri, timeoutMs: 2000 }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/ECS task metadata endpoint .*answered 500/);
  });

  it("gives up at its deadline when the endpoint does not answer", async () => {
    const uri = await metadataEndpoint(() => "hang");
    const err = await readEcsTaskIpv4({ metadataUri: uri, timeoutMs: 200 }).catch((e: unknown) => e);
    expect(hasCode(err, "timeout")).toBe(true);
    expect((err as Error).message).toMatch(/did not answer within 200 ms/);
  });

  it("refuses ecs without ECS_CONTAINER_METADATA_URI_V4, naming both variables", () => {
    expect(() => loadAgentConfig({ TERN_AGENT_ADVERTISE_HOST: "ecs" })).toThrow(
      /TERN_AGENT_ADVERTISE_HOST.*ECS_CONTAINER_METADATA_URI_V4/,
    );
    expect(
      loadAgentConfig({ TERN_AGENT_ADVERTISE_HOST: "ecs", ECS_CONTAINER_METADATA_URI_V4: "http://169.254.170.2/v4/x" })
        .TERN_AGENT_ADVERTISE_HOST,
    ).toBe("ecs");
  });
});
