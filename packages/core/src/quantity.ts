import { TernError } from "./errors.js";

/**
 * Kubernetes resource quantities (`100Ki`, `1.5Gi`, `500M`, `1e3`, `100m`), as used by `Model.spec.memory`.
 *
 * The arithmetic is exact (BigInt over the decimal digits), so `1.1k` is 1100 and not 1100.0000000000002, and the
 * round-up to whole bytes never adds a spurious byte.
 */

/** Binary (powers of 1024) suffixes, as exponents of 2. */
const BINARY_SUFFIXES: Readonly<Record<string, number>> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
/** Decimal SI suffixes, as exponents of 10. `m` is milli (not mega): Kubernetes' rule. */
const DECIMAL_SUFFIXES: Readonly<Record<string, number>> = {
  n: -9,
  u: -6,
  m: -3,
  "": 0,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};

// sign, digits with an optional fraction, then either an exponent (e3, E-2) or a suffix.
const QUANTITY_RE = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|([KMGTPE]i|[numkMGTPE])?)$/;

/** Exponents beyond this are rejected rather than building enormous integers; real quantities never come near. */
const MAX_DECIMAL_EXPONENT = 30;

/** An exact quantity: `mantissa × 10^exp10 × 2^exp2`. */
interface ExactQuantity {
  mantissa: bigint;
  exp10: number;
  exp2: number;
}

/** Outcome of {@link safeParseQuantity}: never throws, for validators that collect problems. */
export type QuantityResult = { ok: true; bytes: number; exact: number } | { ok: false; message: string };

const HINT = "expected a Kubernetes quantity such as 100Ki, 1.5Gi, 500M or 1e3";

/** Maps the units people write by habit (`GB`, `mib`, `K`) to the Kubernetes spelling of the same size. */
function suggestUnit(unit: string): string | undefined {
  const m = /^([kmgtpe])(i?)b?$/i.exec(unit);
  if (!m) return undefined;
  const letter = m[1]!.toUpperCase();
  if (m[2] !== "") return `${letter}i`;
  return letter === "K" ? "k" : letter;
}

function parseExact(q: string | number): ExactQuantity | string {
  let text: string;
  if (typeof q === "number") {
    if (!Number.isFinite(q)) return `must be a finite number (got ${q})`;
    // Number's own string form is exact for what it holds and matches QUANTITY_RE (e.g. 1e+21, 1.5, 0.001).
    text = String(q);
  } else if (typeof q === "string") {
    text = q.trim();
  } else {
    return `must be a string or a number (got ${q === null ? "null" : typeof q})`;
  }
  if (text === "") return `must not be empty (${HINT})`;
  const m = QUANTITY_RE.exec(text);
  if (!m) {
    const suffix = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)([A-Za-z]+)$/.exec(text)?.[1];
    if (suffix !== undefined) {
      const known = [...Object.keys(BINARY_SUFFIXES), ...Object.keys(DECIMAL_SUFFIXES).filter((s) => s !== "")];
      const close = suggestUnit(suffix);
      const hint = close === undefined ? "" : ` (did you mean "${close}"?)`;
      return `unknown unit "${suffix}" in ${JSON.stringify(text)}${hint}; units are ${known.join(", ")}`;
    }
    return `${JSON.stringify(text)} is not a quantity (${HINT})`;
  }
  const [, sign, number, exponent, suffix] = m;
  if (sign === "-") return `must not be negative (got ${JSON.stringify(text)})`;
  const [intPart = "", fracPart = ""] = number!.split(".");
  const mantissa = BigInt(`${intPart}${fracPart}` || "0");
  let exp10 = -fracPart.length;
  let exp2 = 0;
  if (exponent !== undefined) {
    const e = Number(exponent);
    if (Math.abs(e) > MAX_DECIMAL_EXPONENT) return `exponent out of range in ${JSON.stringify(text)}`;
    exp10 += e;
  } else if (suffix !== undefined && suffix in BINARY_SUFFIXES) {
    exp2 = BINARY_SUFFIXES[suffix]!;
  } else {
    exp10 += DECIMAL_SUFFIXES[suffix ?? ""]!;
  }
  return { mantissa, exp10, exp2 };
}

/** Rounds an exact quantity up to a whole number, as Kubernetes' `Quantity.Value()` does. */
function ceilToInteger(q: ExactQuantity): bigint {
  const scaled = q.mantissa * 2n ** BigInt(q.exp2);
  if (q.exp10 >= 0) return scaled * 10n ** BigInt(q.exp10);
  const divisor = 10n ** BigInt(-q.exp10);
  return (scaled + divisor - 1n) / divisor;
}

/**
 * Parses a quantity without throwing. `bytes` is rounded UP to a whole number (so `100m` — 0.1 of a byte — needs
 * 1 byte, which is how Kubernetes reads a fractional memory request); `exact` keeps the fraction.
 */
export function safeParseQuantity(q: string | number): QuantityResult {
  const parsed = parseExact(q);
  if (typeof parsed === "string") return { ok: false, message: parsed };
  const whole = ceilToInteger(parsed);
  if (whole > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { ok: false, message: `too large (${JSON.stringify(String(q))} is more than 2^53 bytes)` };
  }
  const exact = (Number(parsed.mantissa) * 2 ** parsed.exp2) / 10 ** -parsed.exp10;
  return { ok: true, bytes: Number(whole), exact: parsed.exp10 >= 0 ? Number(whole) : exact };
}

/**
 * Parses a Kubernetes quantity into bytes, rounded up to a whole byte (`100Ki` → 102400, `1.5Gi` → 1610612736,
 * `500M` → 500000000, `1e3` → 1000, `100m` → 1). Negative or malformed quantities throw a `TernError` with code
 * `manifest.invalid`.
 */
export function parseQuantity(q: string | number): number {
  const result = safeParseQuantity(q);
  if (!result.ok) throw new TernError("manifest.invalid", `invalid quantity: ${result.message}`);
  return result.bytes;
}

/** Formats a byte count for people: the largest binary unit that divides it, e.g. `102400` → `100Ki`. */
export function formatQuantity(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) return String(bytes);
  const units = Object.entries(BINARY_SUFFIXES).sort((a, b) => b[1] - a[1]);
  for (const [unit, exp] of units) {
    const size = 2 ** exp;
    if (bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}
