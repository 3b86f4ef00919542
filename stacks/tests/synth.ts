import { Template } from "aws-cdk-lib/assertions";
import { App, getStack } from "sst/constructs";
import { initProject } from "sst/project.js";
import sstConfig from "../../sst.config.js";

/**
 * Synthesises the SST app offline (no AWS calls: `sst build` would look up STS and CloudFormation) and returns a
 * function that gives the CloudFormation template of one stack.
 */
export async function synthesize(): Promise<<T>(stack: (ctx: never) => T) => Template> {
  process.env.NODE_ENV = "test";
  await initProject({ stage: "test" });
  const app = new App({
    mode: "deploy",
    stage: "test",
    name: "tern",
    region: "us-east-1",
    account: "123456789012",
  });
  await sstConfig.stacks(app);
  await app.finish();
  return (stack) => Template.fromStack(getStack(stack as never));
}
