import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { TernError } from "@tern/core";

// A Model's `secretName` (Seldon's per-model storage credentials) names a file in TERN_SECRETS_DIR. Its content is the
// JSON of the rclone configuration a Seldon storage secret holds — `{"type": "s3", "parameters": {...}}` — so a
// secret can be carried over as it is. Only the fields below are read; anything else is ignored.

/** Credentials for one download, read from a secret. */
export type StorageCredentials =
  | {
      type: "s3";
      /** The secret's name, for messages (never its values). */
      name: string;
      accessKeyId: string;
      secretAccessKey: string;
      sessionToken?: string;
      /** An S3-compatible endpoint (MinIO, moto); path-style addressing is used with it. */
      endpoint?: string;
      region?: string;
    }
  | { type: "gcs"; name: string; accessToken: string };

/** Where `secretName`s are looked up. */
export interface SecretsSource {
  /** The credentials of `name`; fails with a reason naming the secret and `storageUri` (never a value). */
  get(name: string, storageUri: string): Promise<StorageCredentials>;
}

/** Kubernetes secret names: a DNS subdomain, so never a path. */
const SECRET_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * Secrets as one file per name in `dir` (TERN_SECRETS_DIR), read at each load so a rotated secret is picked up by the
 * next download. `dir` undefined: every `secretName` fails to load, saying TERN_SECRETS_DIR is unset.
 */
export function createSecretsDir(dir: string | undefined): SecretsSource {
  return {
    async get(name: string, storageUri: string): Promise<StorageCredentials> {
      const fail = (why: string, cause?: unknown) =>
        new TernError("not_found", `secret "${name}" (secretName for ${storageUri}) ${why}`, {
          ...(cause === undefined ? {} : { cause }),
        });
      if (!SECRET_NAME.test(name) || name.includes(".."))
        throw new TernError(
          "bad_request",
          `secretName "${name.slice(0, 100)}" for ${storageUri} is not a valid secret name (lower-case letters, digits, '-' and '.')`,
        );
      if (dir === undefined) throw fail("cannot be read: no secrets folder is configured (TERN_SECRETS_DIR)");
      let text: string;
      try {
        text = await readFile(join(dir, name), "utf8");
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw fail(
          code === "ENOENT" ? `not found in TERN_SECRETS_DIR (${dir})` : `cannot be read from ${dir} (${code})`,
          err,
        );
      }
      return parseSecret(name, storageUri, text);
    },
  };
}

/** The credentials in a secret file's text; a message naming the secret and the missing field otherwise. */
export function parseSecret(name: string, storageUri: string, text: string): StorageCredentials {
  const invalid = (why: string) =>
    new TernError("bad_request", `secret "${name}" (secretName for ${storageUri}) is not usable: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw invalid('not JSON (expected {"type": "s3" or "gcs", "parameters": {...}})');
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) throw invalid("not a JSON object");
  const { type, parameters } = doc as { type?: unknown; parameters?: unknown };
  const params = (typeof parameters === "object" && parameters !== null ? parameters : {}) as Record<string, unknown>;
  const text_ = (key: string): string | undefined => {
    const v = params[key];
    return typeof v === "string" && v !== "" ? v : undefined;
  };
  if (type === "s3") {
    const accessKeyId = text_("access_key_id");
    const secretAccessKey = text_("secret_access_key");
    if (accessKeyId === undefined) throw invalid("parameters.access_key_id is missing");
    if (secretAccessKey === undefined) throw invalid("parameters.secret_access_key is missing");
    const sessionToken = text_("session_token");
    const endpoint = text_("endpoint");
    const region = text_("region");
    return {
      type: "s3",
      name,
      accessKeyId,
      secretAccessKey,
      ...(sessionToken === undefined ? {} : { sessionToken }),
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(region === undefined ? {} : { region }),
    };
  }
  if (type === "gcs" || type === "google cloud storage") {
    // rclone keeps the OAuth token as a JSON string in `token`; a plain `access_token` is accepted too.
    let accessToken = text_("access_token");
    const token = params.token;
    if (accessToken === undefined && token !== undefined) {
      try {
        const t = (typeof token === "string" ? JSON.parse(token) : token) as { access_token?: unknown };
        if (typeof t.access_token === "string" && t.access_token !== "") accessToken = t.access_token;
      } catch {
        throw invalid("parameters.token is not JSON");
      }
    }
    if (accessToken === undefined) throw invalid("parameters.access_token (or token.access_token) is missing");
    return { type: "gcs", name, accessToken };
  }
  throw invalid(`type ${JSON.stringify(type ?? null)} is not supported (use "s3" or "gcs")`);
}
