import { type PipelineResource, TernError } from "@tern/core";
import type { SpecSource } from "./worker.js";

export interface SchedulerSpecsOptions {
  /** Base URL of the scheduler's control API. */
  url: string;
  token?: string;
  /** @default globalThis.fetch */
  fetch?: typeof fetch;
}

/** Reads a pipeline's spec from the scheduler (`GET /v1/pipelines/{p}/spec`); the caller's signal bounds the call. */
export function createSchedulerSpecs(options: SchedulerSpecsOptions): SpecSource {
  const base = options.url.replace(/\/+$/, "");
  const doFetch = options.fetch ?? globalThis.fetch;
  const headers: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {};
  return async (pipeline, signal) => {
    const res = await doFetch(`${base}/v1/pipelines/${encodeURIComponent(pipeline)}/spec`, { headers, signal });
    if (res.status !== 200) {
      const text = (await res.text()).slice(0, 300);
      throw new TernError(
        res.status === 404 ? "not_found" : "unavailable",
        `GET spec of ${pipeline}: ${res.status} ${text}`,
        {
          retriable: true,
        },
      );
    }
    const view = (await res.json()) as { version: number; resource: PipelineResource };
    return { version: view.version, resource: view.resource };
  };
}
