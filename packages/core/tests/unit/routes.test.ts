import { describe, expect, it } from "vitest";
import { packRouteTable, type RouteTable, unpackRouteTable } from "../../src/routes.js";

function bigTable(models: number): RouteTable {
  const table: RouteTable = { revision: 7, models: {}, pipelines: {}, experiments: {} };
  for (let i = 0; i < models; i++) {
    const name = `model-${i}`;
    table.models[name] = {
      name,
      version: 1 + (i % 3),
      state: "ModelAvailable",
      endpoints: [0, 1].map((r) => ({
        server: `server-${i % 20}`,
        replica: (i + r) % 50,
        version: 1 + (i % 3),
        http: `http://10.0.${i % 20}.${(i + r) % 50}:9500`,
        grpc: `10.0.${i % 20}.${(i + r) % 50}:9501`,
      })),
    };
  }
  return table;
}

describe("packed route tables", () => {
  it("unpack to exactly the table that was packed, several times smaller", () => {
    const table = bigTable(2000);
    const packed = packRouteTable(table);
    expect(packed.revision).toBe(7);
    expect(unpackRouteTable(JSON.parse(JSON.stringify(packed)))).toEqual(table);
    expect(JSON.stringify(packed).length * 20).toBeLessThan(JSON.stringify(table).length);
  });

  it("pass a plain table and other values through untouched", () => {
    const table = bigTable(2);
    expect(unpackRouteTable(table)).toBe(table);
    expect(unpackRouteTable(undefined)).toBeUndefined();
    expect(unpackRouteTable("text")).toBe("text");
  });

  it("refuse a packed value that is not Brotli-compressed JSON, with code internal", () => {
    for (const brotliBase64 of ["bm90IGJyb3RsaQ==", 42]) {
      expect(() => unpackRouteTable({ revision: 1, brotliBase64 })).toThrow(
        expect.objectContaining({ code: "internal", message: expect.stringMatching(/cannot be unpacked/) }),
      );
    }
  });
});
