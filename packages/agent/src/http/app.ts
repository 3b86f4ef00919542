import { INFERENCE_HEADER_CONTENT_LENGTH, REPLICA_MISS_HEADER, TernError } from "@tern/core";
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import type { Logger } from "pino";
import { codeOf, httpStatusFor, isPublicError, ReplicaMissError } from "../errors.js";
import type { InferenceService } from "../inference/inference-service.js";
import { decodeRestRequest, encodeRestResponse } from "../inference/rest-codec.js";
import type { AgentMetrics } from "../metrics.js";

export interface AgentAppDeps {
  service: InferenceService;
  metrics: AgentMetrics;
  logger?: Logger;
  /**
   * Largest accepted request body in bytes; larger bodies get 413.
   * @default 16777216 (16 MiB)
   */
  maxBodyBytes?: number;
}

const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();
/** A request asking for binary outputs names this parameter; the agent encodes those itself (MLServer cannot). */
const BINARY_DATA = Buffer.from("binary_data");

function includesBytes(haystack: Uint8Array, needle: Buffer): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).includes(needle);
}

/** A `content-length` value this app trusts enough to answer 413 from it (RFC 9110: 1*DIGIT). */
const CONTENT_LENGTH = /^\d+$/;

/**
 * The agent's Open Inference Protocol REST app (JSON and the binary-tensor extension) plus `/metrics`.
 * Routes never read the environment: everything comes in through `deps`.
 */
export function createAgentApp(deps: AgentAppDeps): Hono {
  const { service, metrics, logger } = deps;
  const maxBodyBytes = deps.maxBodyBytes ?? 16 * 1024 * 1024;
  const app = new Hono();

  app.onError((err, c) => {
    const code = codeOf(err);
    if (err instanceof ReplicaMissError) c.header(REPLICA_MISS_HEADER, "1");
    if (isPublicError(err)) return c.json({ error: err.message }, httpStatusFor(code));
    logger?.error({ err, path: c.req.path }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404));

  app.get("/v2/health/live", (c) => c.json({ live: service.live() }));
  app.get("/v2/health/ready", (c) => {
    const ready = service.ready();
    return c.json({ ready }, ready ? 200 : 503);
  });
  app.get("/v2", (c) => c.json(service.serverMetadata()));

  const metadata = (c: Context) => c.json(service.modelMetadata(c.req.param("model")!, c.req.param("version")));
  app.get("/v2/models/:model", metadata);
  app.get("/v2/models/:model/versions/:version", metadata);

  const ready = (c: Context) => {
    const model = c.req.param("model")!;
    const ok = service.modelReady(model, c.req.param("version"));
    return c.json({ name: model, ready: ok }, ok ? 200 : 503);
  };
  app.get("/v2/models/:model/ready", ready);
  app.get("/v2/models/:model/versions/:version/ready", ready);

  const tooLarge = (c: Context) =>
    c.json({ error: `request body is larger than the limit of ${maxBodyBytes} bytes` }, 413);
  // Only a body without a usable content-length (chunked) is counted while it streams in: Hono's bodyLimit reads
  // `c.req.raw.body`, which makes @hono/node-server build a full web Request and stream per request (~15% of the
  // agent's CPU under load, bench/results/inference.md). A declared length is checked here, and `handleInfer` reads
  // such a body with `c.req.arrayBuffer()` (node-server's direct read) and checks the byte count it got.
  const streamingLimit = bodyLimit({ maxSize: maxBodyBytes, onError: tooLarge });
  const limit: MiddlewareHandler = async (c, next) => {
    const declared = c.req.header("content-length");
    if (declared === undefined || c.req.header("transfer-encoding") !== undefined || !CONTENT_LENGTH.test(declared))
      return streamingLimit(c, next);
    if (Number(declared) > maxBodyBytes) return tooLarge(c);
    await next();
  };

  const infer = async (c: Context) => {
    const started = performance.now();
    const model = c.req.param("model")!;
    let status = 500;
    try {
      const response = await handleInfer(c, model);
      status = response.status;
      return response;
    } catch (err) {
      status = isPublicError(err) ? httpStatusFor(codeOf(err)) : 500;
      throw err;
    } finally {
      metrics.observe(service.metricsLabel(model), "rest", status, (performance.now() - started) / 1000);
    }
  };
  app.post("/v2/models/:model/infer", limit, infer);
  app.post("/v2/models/:model/versions/:version/infer", limit, infer);

  async function handleInfer(c: Context, model: string): Promise<Response> {
    const bytes = new Uint8Array(await c.req.arrayBuffer());
    // A declared length is what `limit` checked; the bytes read are what counts (a caller of `app.request` can send a
    // Request whose content-length header says less than its body holds).
    if (bytes.length > maxBodyBytes) return tooLarge(c);
    const headerLength = c.req.header(INFERENCE_HEADER_CONTENT_LENGTH);
    let jsonPart = bytes;
    let binary: Uint8Array | undefined;
    if (headerLength !== undefined) {
      if (!/^\d+$/.test(headerLength.trim()))
        throw new TernError(
          "bad_request",
          `Inference-Header-Content-Length must be a byte count, got "${headerLength}"`,
        );
      const n = Number(headerLength);
      if (n > bytes.length)
        throw new TernError(
          "bad_request",
          `Inference-Header-Content-Length is ${n} but the body has only ${bytes.length} bytes`,
        );
      jsonPart = bytes.subarray(0, n);
      binary = bytes.subarray(n);
    }
    // MLServer speaks OIP JSON itself: a JSON request that asks for no binary output goes to it as it is, and its
    // answer comes back as it is (under the caller's model name). Binary tensors (MLServer has no such extension) and
    // anything else take the decoding path below.
    if (service.forwardsJson && binary === undefined && !includesBytes(bytes, BINARY_DATA)) {
      try {
        const answer = await service.forwardJson(model, c.req.param("version"), bytes);
        if (answer !== undefined) return c.body(answer, 200, { "content-type": "application/json" });
      } catch (err) {
        // A request that failed gets the agent's own message when the agent would have refused it too (malformed JSON,
        // a shape that does not match its data): the same answer as on the decoding path, which checks before it
        // calls MLServer. Only failures pay for the decoding.
        decodeRestRequest(parseJson(bytes), undefined);
        throw err;
      }
    }
    const request = decodeRestRequest(parseJson(jsonPart), binary);
    const result = await service.infer(model, c.req.param("version"), request);
    const encoded = encodeRestResponse(request, result);
    if (!encoded.binary) return c.json(encoded.json);
    const head = utf8Encoder.encode(JSON.stringify(encoded.json));
    const total = head.length + encoded.binary.reduce((a, b) => a + b.length, 0);
    const out = new Uint8Array(total);
    out.set(head, 0);
    let offset = head.length;
    for (const part of encoded.binary) {
      out.set(part, offset);
      offset += part.length;
    }
    return c.body(out, 200, {
      "content-type": "application/octet-stream",
      [INFERENCE_HEADER_CONTENT_LENGTH]: String(head.length),
    });
  }

  function parseJson(part: Uint8Array): unknown {
    try {
      return JSON.parse(utf8.decode(part));
    } catch (err) {
      throw new TernError("bad_request", `malformed JSON body: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  app.get("/metrics", async (c) => {
    const text = await metrics.registry.metrics();
    return c.text(text, 200, { "content-type": metrics.registry.contentType });
  });

  return app;
}
