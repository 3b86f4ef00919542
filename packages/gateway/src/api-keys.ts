import { createHash, timingSafeEqual } from "node:crypto";
import { GatewayError } from "./errors.js";

/** Checks `Authorization: Bearer <key>` against configured SHA-256 hashes. */
export type ApiKeyCheck = (authorization: string | undefined) => void;

/** Hex SHA-256 of a key: what the configuration stores (`TERN_GATEWAY_API_KEY_SHA256`). */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/**
 * A checker for the given hex SHA-256 hashes, or undefined when the list is empty (keys off). Every configured hash is
 * compared in constant time, and all of them are always compared, so the timing tells nothing about which key is near.
 * @throws GatewayError `config.invalid` for a hash that is not 64 hex digits.
 */
export function createApiKeyCheck(hashes: readonly string[]): ApiKeyCheck | undefined {
  if (hashes.length === 0) return undefined;
  const digests = hashes.map((h, i) => {
    if (!/^[0-9a-fA-F]{64}$/.test(h)) {
      throw new GatewayError("config.invalid", `API key hash #${i + 1} is not a hex SHA-256 digest (64 hex digits)`);
    }
    return Buffer.from(h, "hex");
  });
  return (authorization) => {
    const match = authorization ? /^Bearer[ ]+(\S+)\s*$/i.exec(authorization) : null;
    if (!match) throw new GatewayError("unauthorized", "missing API key: send Authorization: Bearer <key>");
    const presented = createHash("sha256").update(match[1]!, "utf8").digest();
    let ok = false;
    for (const digest of digests) ok = timingSafeEqual(presented, digest) || ok;
    if (!ok) throw new GatewayError("unauthorized", "invalid API key");
  };
}
