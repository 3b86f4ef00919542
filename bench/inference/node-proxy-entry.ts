/**
 * Bench-only floor for "one Node hop": a minimal node:http reverse proxy (keep-alive agent, body buffered, no
 * routing, no metrics, no framework) in front of one agent. It is what any Node gateway pays at least on this
 * machine, so the gateway's own overhead is the distance between it and this.
 *
 *   BENCH_AGENT_URL=http://127.0.0.1:9500 BENCH_GATEWAY_PORT=0 node --import tsx bench/inference/node-proxy-entry.ts
 *
 * Prints `proxy serving <url>` once it listens; exits 0 on SIGTERM/SIGINT.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

const agentUrl = new URL(process.env.BENCH_AGENT_URL ?? "http://127.0.0.1:9500");
const port = Number(process.env.BENCH_GATEWAY_PORT ?? "0");
const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: "lifo" });

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const up = http.request(
      {
        host: agentUrl.hostname,
        port: agentUrl.port,
        path: req.url,
        method: req.method,
        agent,
        headers: { "content-type": req.headers["content-type"] ?? "application/json", "content-length": body.length },
      },
      (upRes) => {
        const out: Buffer[] = [];
        upRes.on("data", (c: Buffer) => out.push(c));
        upRes.on("end", () => {
          const payload = Buffer.concat(out);
          res.writeHead(upRes.statusCode ?? 502, {
            "content-type": upRes.headers["content-type"] ?? "application/json",
            "content-length": payload.length,
          });
          res.end(payload);
        });
      },
    );
    up.on("error", () => {
      res.writeHead(502).end();
    });
    up.end(body);
  });
});

server.listen(port, "127.0.0.1", () => {
  console.log(`proxy serving http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    const force = setTimeout(() => process.exit(1), 5_000);
    force.unref();
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    agent.destroy();
  });
}
