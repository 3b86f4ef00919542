import { configDefaults, defineConfig } from "vitest/config";

// `npm test` runs both projects. Unit tests are pure and fast; integration tests talk to a real Kafka broker and
// DynamoDB Local, which the integration global setup starts when they are not already running.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["packages/*/tests/unit/**/*.test.ts"],
          environment: "node",
          // The property tests (fast-check, hundreds of runs) take seconds on a busy 2-core machine: a hang guard, not
          // a speed check.
          testTimeout: 30_000,
        },
      },
      {
        // Offline synthesis of the SST app; asserts on the CloudFormation templates.
        test: {
          name: "stacks",
          include: ["stacks/tests/**/*.test.ts"],
          environment: "node",
          testTimeout: 120_000,
        },
      },
      {
        // The bad-input corpus: every edge in one process on loopback ports, no broker or database.
        test: {
          name: "corpus",
          include: ["test/bad-input/**/*.test.ts"],
          environment: "node",
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, "test/bad-input/**"],
          environment: "node",
          globalSetup: ["test/setup/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
