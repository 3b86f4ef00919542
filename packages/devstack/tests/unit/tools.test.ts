import { hasCode } from "@tern/core";
import { describe, expect, it } from "vitest";
import { parseJavaMajor, requireJava, requireMaven } from "../../src/tools.js";

describe("parseJavaMajor", () => {
  it("reads modern and legacy version strings", () => {
    expect(parseJavaMajor('openjdk version "17.0.15" 2025-04-15')).toBe(17);
    expect(parseJavaMajor('openjdk version "21" 2023-09-19')).toBe(21);
    expect(parseJavaMajor('java version "1.8.0_392"')).toBe(8);
    expect(parseJavaMajor('openjdk version "23-ea" 2024-09-17')).toBe(23);
  });

  it("returns undefined for text without a version", () => {
    expect(parseJavaMajor("command not found")).toBeUndefined();
  });
});

describe("missing tools", () => {
  it("says in one line to install Java when java is not on PATH", () => {
    let error: unknown;
    try {
      requireJava("tern-no-such-java");
    } catch (err) {
      error = err;
    }
    expect(hasCode(error, "unavailable")).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain("`tern-no-such-java` was not found: install a Java 17+ runtime");
    expect(message).not.toContain("\n");
  });

  it("says in one line to install Maven when mvn is not on PATH", () => {
    let error: unknown;
    try {
      requireMaven("tern-no-such-mvn");
    } catch (err) {
      error = err;
    }
    expect(hasCode(error, "unavailable")).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain("`tern-no-such-mvn` was not found: install Apache Maven 3.8+");
    expect(message).not.toContain("\n");
  });
});
