import { beforeAll, describe, expect, it } from "vitest";
import { Data } from "../Data.js";
import { synthesize } from "./synth.js";

describe("Data stack", () => {
  let template: ReturnType<Awaited<ReturnType<typeof synthesize>>>;
  beforeAll(async () => {
    template = (await synthesize())(Data);
  }, 60_000);

  it("creates the state table with pk/sk keys and on-demand billing", () => {
    template.resourceCountIs("AWS::DynamoDB::GlobalTable", 1);
    template.hasResourceProperties("AWS::DynamoDB::GlobalTable", {
      TableName: "test-tern-state",
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      BillingMode: "PAY_PER_REQUEST",
    });
    expect(Object.keys(template.findOutputs("StateTable"))).toHaveLength(1);
  });

  it("expires pipeline replies by TTL on expiresAt and keeps point-in-time recovery on", () => {
    const tables = Object.values(template.findResources("AWS::DynamoDB::GlobalTable"));
    expect(tables).toHaveLength(1);
    const props = tables[0]!.Properties;
    expect(props.TimeToLiveSpecification).toEqual({ AttributeName: "expiresAt", Enabled: true });
    // TableV2 puts PITR on each replica (here the one in the stack's region).
    expect(props.Replicas).toHaveLength(1);
    expect(props.Replicas[0].PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
  });
});
