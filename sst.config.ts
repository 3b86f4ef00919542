import type { SSTConfig } from "sst";
import { Data } from "./stacks/Data.js";

/**
 * Tern on AWS (SST v2 on AWS CDK): `npx sst deploy --stage <stage>`. The stacks grow issue by issue; today the data
 * stack holds the one DynamoDB table with all scheduler state (see packages/core/src/state-store.ts).
 */
export default {
  config() {
    return { name: "tern", region: process.env.AWS_REGION ?? "us-east-1" };
  },
  stacks(app) {
    app.setDefaultRemovalPolicy(app.mode === "dev" ? "destroy" : "retain");
    app.stack(Data);
  },
} satisfies SSTConfig;
