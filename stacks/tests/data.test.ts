import { describe, expect, it } from "vitest";
import { Data } from "../Data.js";
import { synthesize } from "./synth.js";

describe("Data stack", () => {
  it("creates the state table with pk/sk keys, on-demand billing and TTL on expiresAt", async () => {
    const template = (await synthesize())(Data);
    template.resourceCountIs("AWS::DynamoDB::GlobalTable", 1);
    template.hasResourceProperties("AWS::DynamoDB::GlobalTable", {
      TableName: "test-tern-state",
      KeySchema: [
        { AttributeName: "pk", KeyType: "HASH" },
        { AttributeName: "sk", KeyType: "RANGE" },
      ],
      BillingMode: "PAY_PER_REQUEST",
      TimeToLiveSpecification: { AttributeName: "expiresAt", Enabled: true },
    });
    const outputs = template.findOutputs("StateTable");
    expect(Object.keys(outputs)).toHaveLength(1);
  }, 60_000);
});
