import { spawnSync } from "node:child_process";
import { TernError } from "@tern/core";

/** The oldest Java that runs both Kafka 3.9 and DynamoDB Local. */
export const minJavaMajor = 17;

const javaHint = `install a Java ${minJavaMajor}+ runtime (e.g. \`apt install openjdk-17-jre-headless\`, \`brew install openjdk@17\`) and put \`java\` on PATH`;
const mavenHint =
  "install Apache Maven 3.8+ (e.g. `apt install maven`, `brew install maven`) and put `mvn` on PATH; it fetches the Kafka broker once";

/**
 * Reads the major version from `java -version` output (`openjdk version "17.0.15"`, `java version "1.8.0_392"`).
 * Returns undefined when the text has no version.
 */
export function parseJavaMajor(versionOutput: string): number | undefined {
  const match = /version "(\d+)(?:\.(\d+))?[^"]*"/.exec(versionOutput);
  if (match === null) return undefined;
  const first = Number(match[1]);
  // Java 8 and older report "1.x".
  return first === 1 && match[2] !== undefined ? Number(match[2]) : first;
}

/**
 * Checks that `java` runs and is new enough. Throws an `unavailable` TernError with one line saying what to install,
 * instead of the spawn stack trace a missing binary would give later.
 */
export function requireJava(javaCommand = "java"): number {
  const result = spawnSync(javaCommand, ["-version"], { encoding: "utf8", timeout: 30_000 });
  if (result.error !== undefined) {
    throw new TernError("unavailable", `\`${javaCommand}\` was not found: ${javaHint}`, { cause: result.error });
  }
  const major = parseJavaMajor(`${result.stderr}\n${result.stdout}`);
  if (major === undefined || result.status !== 0) {
    throw new TernError("unavailable", `\`${javaCommand} -version\` failed (exit ${result.status}): ${javaHint}`);
  }
  if (major < minJavaMajor) {
    throw new TernError("unavailable", `Java ${major} is too old for Kafka 3.9 and DynamoDB Local: ${javaHint}`);
  }
  return major;
}

/** Checks that `mvn` runs; throws an `unavailable` TernError with one line saying what to install. */
export function requireMaven(mavenCommand = "mvn"): void {
  const result = spawnSync(mavenCommand, ["-v"], { encoding: "utf8", timeout: 60_000 });
  if (result.error !== undefined || result.status !== 0) {
    throw new TernError("unavailable", `\`${mavenCommand}\` was not found: ${mavenHint}`, { cause: result.error });
  }
}
