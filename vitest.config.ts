import { configDefaults, defineConfig } from "vitest/config";

/**
 * Integration files that must run alone, after all the others (project "integration-serial"):
 * - `npm start` and the dev stack (test/devstack): each starts a whole stack of its own (a second broker, DynamoDB
 *   Local, every platform process) and kills and restarts pieces of it on a schedule;
 * - the chaos and autoscaling files: they drive load and scaling on timers and count what happened, so another file
 *   eating the CPU beside them changes what they see;
 * - files that assert on the broker's whole list of consumer groups (no group left behind), which another file's
 *   consumers would join meanwhile.
 * Everything else uses only free ports and its own topics, groups and tables, so it shares the broker and DynamoDB
 * with one other file at a time.
 */
const SERIAL_INTEGRATION = [
  "test/devstack/**/*.test.ts",
  "test/dataflow/chaos.test.ts",
  "test/e2e/autoscaling.test.ts",
  "test/e2e/autoscaling-ramp.test.ts",
  "test/e2e/iris-scaling.test.ts",
  "test/gateway/pipeline-lambda.test.ts",
  "test/gateway/pipeline-samples-matrix.test.ts",
  "test/cli/pipeline-cli.test.ts",
];

/**
 * Files run two at a time in the first group: most integration files wait on a broker, a database or child
 * processes, not on the CPU, so two of them overlap well even on a 2-core machine (vitest's default there is one).
 */
const PARALLEL_WORKERS = 2;

// `npm test` runs every project. The first group (sequence.groupOrder 0: unit, corpus and the parallel integration
// files) runs two files at a time; then the second (stacks and integration-serial) runs its files one at a time.
// The integration projects share one global setup, which starts one Kafka broker and one DynamoDB Local (unless
// KAFKA_BROKERS / DYNAMODB_ENDPOINT name running ones) for both, and meanwhile the slow first-time installs (Python
// venvs, fake-gcs-server) in the background. The projects of one group must agree on maxWorkers.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["packages/*/tests/unit/**/*.test.ts"],
          environment: "node",
          maxWorkers: PARALLEL_WORKERS,
          // The property tests (fast-check, hundreds of runs) take seconds on a busy 2-core machine: a hang guard, not
          // a speed check.
          testTimeout: 30_000,
        },
      },
      {
        // Offline synthesis of the SST app; asserts on the CloudFormation templates. One file at a time, in the second
        // group: SST bundles the Lambda functions into the checkout's .sst/artifacts, so two synths at once write
        // over each other's bundles.
        test: {
          name: "stacks",
          include: ["stacks/tests/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
      {
        // The bad-input corpus: every edge in one process on loopback ports, no broker or database.
        test: {
          name: "corpus",
          include: ["test/bad-input/**/*.test.ts"],
          environment: "node",
          maxWorkers: PARALLEL_WORKERS,
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, "test/bad-input/**", ...SERIAL_INTEGRATION],
          environment: "node",
          globalSetup: ["test/setup/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          maxWorkers: PARALLEL_WORKERS,
        },
      },
      {
        test: {
          name: "integration-serial",
          include: SERIAL_INTEGRATION,
          environment: "node",
          globalSetup: ["test/setup/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
