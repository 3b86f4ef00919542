import { inject } from "vitest";

/**
 * Where the integration tests find the real services. The integration global setup (test/setup/global-setup.ts)
 * starts a Kafka broker and DynamoDB Local when none is given, and provides their addresses under these keys.
 */
declare module "vitest" {
  export interface ProvidedContext {
    dynamodbEndpoint: string;
    kafkaBrokers: string[];
  }
}

export function dynamodbEndpoint(): string {
  return inject("dynamodbEndpoint");
}

export function kafkaBrokers(): string[] {
  return inject("kafkaBrokers");
}
