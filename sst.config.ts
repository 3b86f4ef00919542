import type { SSTConfig } from "sst";
import { Agents } from "./stacks/Agents.js";
import { Control } from "./stacks/Control.js";
import { Data } from "./stacks/Data.js";
import { Gateway } from "./stacks/Gateway.js";
import { ModelGateway } from "./stacks/ModelGateway.js";
import { Network } from "./stacks/Network.js";
import { Streaming } from "./stacks/Streaming.js";

/**
 * Tern on AWS (SST v2 on AWS CDK): `npx sst deploy --stage <stage>` (docs/deploy.md). Configuration comes from the
 * deploying machine's environment, parsed in one place (stacks/config.ts).
 *
 *   Network ─▶ Data ─▶ Streaming ─▶ Agents ─▶ Control ─▶ ModelGateway
 *                                                      └▶ Gateway (HTTPS endpoint)
 */
export default {
  config() {
    return { name: "tern", region: process.env.AWS_REGION ?? "us-east-1" };
  },
  stacks(app) {
    app.setDefaultRemovalPolicy(app.mode === "dev" ? "destroy" : "retain");
    app.stack(Network).stack(Data).stack(Streaming).stack(Agents).stack(Control).stack(ModelGateway).stack(Gateway);
  },
} satisfies SSTConfig;
