import { isAbsolute, relative } from "node:path";
import type { DevStackService } from "./dev-stack.js";

/** Options of {@link formatServiceTable}. */
export interface ServiceTableOptions {
  /** Log paths are shown relative to this folder. */
  cwd: string;
  /** Addresses reserved for components that are not in the stack yet. */
  reserved?: ReadonlyArray<{ name: string; address: string }>;
}

const labels: Record<string, string> = { kafka: "Kafka", dynamodb: "DynamoDB Local" };

/** "What runs where": one aligned line per service, then the reserved addresses. */
export function formatServiceTable(services: readonly DevStackService[], options: ServiceTableOptions): string {
  const rows: Array<[string, string, string]> = services.map((service) => {
    const label = service.kind === "external" ? `${labels[service.name] ?? service.name}` : labels[service.name];
    const detail =
      service.kind === "external"
        ? "external (given in config)"
        : `pid ${service.pid ?? "?"}${service.logFile ? `, log ${shortPath(service.logFile, options.cwd)}` : ""}`;
    return [label ?? service.name, service.address || "-", detail];
  });
  const taken = new Set(services.map((service) => service.address));
  for (const reserved of options.reserved ?? []) {
    if (!taken.has(reserved.address)) rows.push([reserved.name, reserved.address, "reserved, not started yet"]);
  }
  const width0 = Math.max(...rows.map((row) => row[0].length));
  const width1 = Math.max(...rows.map((row) => row[1].length));
  return rows
    .map(([name, address, detail]) => `  ${name.padEnd(width0)}  ${address.padEnd(width1)}  ${detail}`)
    .join("\n");
}

/** Relative to `cwd` when the file is inside it, absolute otherwise ("../../tmp/x" helps nobody). */
export function shortPath(file: string, cwd: string): string {
  const rel = relative(cwd, file);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? file : rel;
}
