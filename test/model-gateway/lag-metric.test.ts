import { CloudWatchClient, GetMetricStatisticsCommand, ListMetricsCommand } from "@aws-sdk/client-cloudwatch";
import type { BusMessage, MessageBus } from "@tern/core";
import { waitFor } from "@tern/devstack";
import { createKafkaBus, readConsumerLag } from "@tern/kafka";
import { createCloudWatchLagSink, createLagPublisher, heldPartitions, LAG_METRIC } from "@tern/model-gateway";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Emulator, startMoto } from "../helpers/emulators.js";
import { dynamodbEndpoint, kafkaBrokers } from "../helpers/services.js";
import { startSchedulerProcess, waitActive } from "../scheduler/scheduler-process.js";
import { startModelGatewayProcess } from "./model-gateway-process.js";

// The model gateway's lag metric end to end: a group reads and commits some records on the real broker, stops, and
// more records arrive that nobody reads; the publisher measures the partitions the group held and puts the value to
// moto server's CloudWatch, where it is read back under the names the AWS stack's autoscaling targets.

const REGION = "us-east-1";
const credentials = { accessKeyId: "testing", secretAccessKey: "testing" };
const suffix = `${Date.now().toString(36)}-${process.pid}`;
const topic = `tern-lag-${suffix}`;
const groupId = `tern-lag-group-${suffix}`;
const stage = `lag-${Date.now().toString(36)}`;

describe("model gateway lag metric (real broker, moto CloudWatch)", () => {
  let moto: Emulator;
  let bus: MessageBus;

  beforeAll(async () => {
    moto = await startMoto();
    bus = createKafkaBus({ brokers: kafkaBrokers() });
    await bus.admin().ensureTopics([topic], 2);
  });

  afterAll(async () => {
    await bus?.close();
    await moto?.stop();
  });

  it("publishes Tern/ModelGatewayLag{Stage} > 0 for records nobody consumed", async () => {
    const producer = bus.producer();
    const send = (partition: number, n: number) =>
      producer.send(
        Array.from({ length: n }, (_, i) => ({
          topic,
          partition,
          key: `${partition}.m.${suffix}-${partition}-${i}-${Date.now()}`,
          value: new Uint8Array([i]),
        })),
      );
    // The group reads, and commits, one record per partition, then leaves: its committed offsets are known.
    const seen: BusMessage[] = [];
    const consumer = bus.consumer({
      groupId,
      topics: [topic],
      onBatch: async (messages) => {
        seen.push(...messages);
      },
    });
    await consumer.start({ timeoutMs: 30_000 });
    await send(0, 1);
    await send(1, 1);
    await waitFor(() => seen.length >= 2, { timeoutMs: 20_000, description: "the group read both records" });
    const held = heldPartitions([
      { bucket: 0, groupId, models: ["m"], partitions: consumer.assignment(), state: "running" },
    ]);
    expect(held).toEqual([{ groupId, partitions: { [topic]: [0, 1] } }]);
    await consumer.stop();
    expect(await readConsumerLag(kafkaBrokers(), held)).toBe(0);

    // Five records nobody reads.
    await send(0, 3);
    await send(1, 2);
    await producer.close();

    const sink = createCloudWatchLagSink({ stage, region: REGION, endpoint: moto.url, credentials });
    const publisher = createLagPublisher({
      readLag: () => readConsumerLag(kafkaBrokers(), held),
      sink,
      intervalMs: 60_000,
      logger: pino({ level: "silent" }),
    });
    try {
      expect(await publisher.publishOnce()).toBe(5);
    } finally {
      await publisher.stop();
      sink.close();
    }

    const cloudwatch = new CloudWatchClient({ region: REGION, endpoint: moto.url, credentials });
    try {
      const now = Date.now();
      const out = await cloudwatch.send(
        new GetMetricStatisticsCommand({
          Namespace: "Tern",
          MetricName: "ModelGatewayLag",
          Dimensions: [{ Name: "Stage", Value: stage }],
          StartTime: new Date(now - 10 * 60_000),
          EndTime: new Date(now + 10 * 60_000),
          Period: 60,
          Statistics: ["Maximum"],
        }),
      );
      const maximum = Math.max(...(out.Datapoints ?? []).map((d) => d.Maximum ?? 0));
      expect(maximum).toBeGreaterThan(0);
      expect(maximum).toBe(5);
    } finally {
      cloudwatch.destroy();
    }
    expect(LAG_METRIC).toEqual({ namespace: "Tern", metricName: "ModelGatewayLag", dimension: "Stage" });
  });

  it("is published by the model-gateway process when TERN_MODELGATEWAY_LAG_METRIC=cloudwatch", async () => {
    const processStage = `${stage}-p`;
    const scheduler = await startSchedulerProcess({
      id: `lag-${suffix}`,
      dynamodbEndpoint: dynamodbEndpoint(),
      table: `tern-lag-${suffix}`,
      env: { TERN_SCHEDULER_ENSURE_TABLE: "true" },
    });
    const cloudwatch = new CloudWatchClient({ region: REGION, endpoint: moto.url, credentials });
    let gateway: Awaited<ReturnType<typeof startModelGatewayProcess>> | undefined;
    try {
      await waitActive(scheduler.url);
      gateway = await startModelGatewayProcess({
        id: "modelgateway-0",
        schedulerUrl: scheduler.url,
        brokers: kafkaBrokers(),
        env: {
          TERN_MODELGATEWAY_LAG_METRIC: "cloudwatch",
          TERN_MODELGATEWAY_LAG_INTERVAL_MS: "1000",
          TERN_STAGE: processStage,
          TERN_CLOUDWATCH_ENDPOINT: moto.url,
          AWS_REGION: REGION,
          AWS_ACCESS_KEY_ID: credentials.accessKeyId,
          AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
        },
      });
      const metric = await waitFor(
        async () => {
          const out = await cloudwatch.send(
            new ListMetricsCommand({
              Namespace: "Tern",
              MetricName: "ModelGatewayLag",
              Dimensions: [{ Name: "Stage", Value: processStage }],
            }),
          );
          return out.Metrics?.[0];
        },
        { timeoutMs: 30_000, intervalMs: 300, description: `Tern/ModelGatewayLag{Stage=${processStage}}` },
      );
      expect(metric.Dimensions).toEqual([{ Name: "Stage", Value: processStage }]);
    } finally {
      cloudwatch.destroy();
      gateway?.kill("SIGTERM");
      await gateway?.exited;
      await scheduler.kill("SIGTERM");
    }
  });
});
