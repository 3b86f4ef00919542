import { describe, expect, it } from "vitest";
import { hasCode } from "../../src/errors.js";
import { formatQuantity, parseQuantity, safeParseQuantity } from "../../src/quantity.js";

describe("parseQuantity", () => {
  it.each([
    ["100Ki", 102_400],
    ["1Mi", 1_048_576],
    ["1.5Gi", 1_610_612_736],
    ["2Ti", 2 * 2 ** 40],
    ["1Pi", 2 ** 50],
    ["4Pi", 2 ** 52],
    ["500M", 500_000_000],
    ["1k", 1000],
    ["1.1k", 1100],
    ["3G", 3e9],
    ["2T", 2e12],
    ["1P", 1e15],
    ["8P", 8e15],
    ["1e3", 1000],
    ["1E3", 1000],
    ["2.5e2", 250],
    ["1e+2", 100],
    ["128", 128],
    ["+64", 64],
    [".5Ki", 512],
    ["0", 0],
    [" 10Mi ", 10 * 2 ** 20],
    [2048, 2048],
    [1e15, 1e15],
  ])("reads %j as %d bytes", (input, bytes) => {
    expect(parseQuantity(input)).toBe(bytes);
  });

  it("rounds fractional byte counts up, as Kubernetes does for memory", () => {
    expect(parseQuantity("100m")).toBe(1);
    expect(parseQuantity("1500m")).toBe(2);
    expect(parseQuantity("0.1Ki")).toBe(103);
    expect(parseQuantity("1e-3")).toBe(1);
    expect(parseQuantity("5n")).toBe(1);
    expect(parseQuantity(0.5)).toBe(1);
  });

  it("keeps the exact fraction in the non-throwing variant", () => {
    expect(safeParseQuantity("100m")).toEqual({ ok: true, bytes: 1, exact: 0.1 });
    expect(safeParseQuantity("250u")).toEqual({ ok: true, bytes: 1, exact: 0.00025 });
    expect(safeParseQuantity("1.5Gi")).toEqual({ ok: true, bytes: 1_610_612_736, exact: 1_610_612_736 });
  });

  it.each([
    ["", "must not be empty (expected a Kubernetes quantity such as 100Ki, 1.5Gi, 500M or 1e3)"],
    ["lots", '"lots" is not a quantity (expected a Kubernetes quantity such as 100Ki, 1.5Gi, 500M or 1e3)'],
    ["1..5Gi", '"1..5Gi" is not a quantity (expected a Kubernetes quantity such as 100Ki, 1.5Gi, 500M or 1e3)'],
    ["Gi", '"Gi" is not a quantity (expected a Kubernetes quantity such as 100Ki, 1.5Gi, 500M or 1e3)'],
    ["1 Gi 2", '"1 Gi 2" is not a quantity (expected a Kubernetes quantity such as 100Ki, 1.5Gi, 500M or 1e3)'],
    ["-1Gi", 'must not be negative (got "-1Gi")'],
    [
      "1GB",
      'unknown unit "GB" in "1GB" (did you mean "G"?); units are Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E',
    ],
    [
      "2MiB",
      'unknown unit "MiB" in "2MiB" (did you mean "Mi"?); units are Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E',
    ],
    ["4K", 'unknown unit "K" in "4K" (did you mean "k"?); units are Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E'],
    ["7Qi", 'unknown unit "Qi" in "7Qi"; units are Ki, Mi, Gi, Ti, Pi, Ei, n, u, m, k, M, G, T, P, E'],
    ["1e99", 'exponent out of range in "1e99"'],
    ["16Ei", 'too large ("16Ei" is more than 2^53 bytes)'],
    ["1E", 'too large ("1E" is more than 2^53 bytes)'],
    [1e21, 'too large ("1e+21" is more than 2^53 bytes)'],
    [Number.NaN, "must be a finite number (got NaN)"],
    [-5, 'must not be negative (got "-5")'],
  ])("rejects %j: %s", (input, message) => {
    expect(safeParseQuantity(input)).toEqual({ ok: false, message });
  });

  it("throws a manifest.invalid TernError naming the problem", () => {
    let caught: unknown;
    try {
      parseQuantity("12 apples");
    } catch (err) {
      caught = err;
    }
    expect(hasCode(caught, "manifest.invalid")).toBe(true);
    expect((caught as Error).message).toBe(
      'invalid quantity: "12 apples" is not a quantity (expected a Kubernetes quantity such as 100Ki, 1.5Gi, 500M or 1e3)',
    );
  });

  it("rejects values that are neither strings nor numbers", () => {
    expect(safeParseQuantity(null as unknown as string)).toEqual({
      ok: false,
      message: "must be a string or a number (got null)",
    });
  });
});

describe("formatQuantity", () => {
  it("uses the largest binary unit that divides the size", () => {
    expect(formatQuantity(102_400)).toBe("100Ki");
    expect(formatQuantity(1_610_612_736)).toBe("1536Mi");
    expect(formatQuantity(2 ** 30)).toBe("1Gi");
    expect(formatQuantity(1000)).toBe("1000");
  });

  it("round-trips through parseQuantity", () => {
    for (const bytes of [1, 1023, 1024, 5 * 2 ** 20, 3 * 2 ** 40 + 1024]) {
      expect(parseQuantity(formatQuantity(bytes))).toBe(bytes);
    }
  });
});
