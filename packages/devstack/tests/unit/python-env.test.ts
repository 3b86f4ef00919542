import { describe, expect, it } from "vitest";
import { countRequirements, formatPipProgress, type PipProgress, readPipLine } from "../../src/python-env.js";

const empty: PipProgress = { installing: false, collected: 0, downloadBytes: 0, unpacking: false };
const read = (lines: string[]): PipProgress => lines.reduce(readPipLine, empty);

describe("reading scripts/python-env.sh's output", () => {
  it("counts collected packages and the sizes pip announces, and notices the unpacking", () => {
    const progress = read([
      "python-env: creating /repo/.tern/python/mlserver with Python 3.11.7 from scripts/python/mlserver.txt",
      "Collecting aiofiles==25.1.0 (from -r /repo/scripts/python/mlserver.txt (line 5))",
      "  Downloading aiofiles-25.1.0-py3-none-any.whl (14 kB)",
      "Collecting xgboost==3.2.0 (from -r /repo/scripts/python/mlserver.txt (line 80))",
      "  Downloading xgboost-3.2.0-py3-none-manylinux_2_28_x86_64.whl (229.6 MB)",
      "     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 229.6/229.6 MB 50.0 MB/s eta 0:00:00",
    ]);
    expect(progress).toMatchObject({ installing: true, collected: 2, unpacking: false });
    expect(progress.downloadBytes).toBeCloseTo(14e3 + 229.6e6, 0);
    expect(readPipLine(progress, "Installing collected packages: aiofiles, xgboost").unpacking).toBe(true);
  });

  it("is not installing when the venv was current (the script prints only the python path)", () => {
    expect(read(["/repo/.tern/python/mlserver/bin/python"])).toEqual(empty);
  });

  it("keeps the script's last own line as the reason of a failure", () => {
    const progress = read([
      "python-env: python3 not found: the mlserver environment needs Python 3.10+ (install python3, or set TERN_PYTHON)",
    ]);
    expect(progress.installing).toBe(false);
    expect(progress.lastScriptLine).toBe(
      "python-env: python3 not found: the mlserver environment needs Python 3.10+ (install python3, or set TERN_PYTHON)",
    );
  });

  it("counts the pinned packages of a requirements file, not its comments", () => {
    expect(countRequirements("# a venv\n# python: 3.11 3.12\naiofiles==25.1.0\n\nxgboost==3.2.0\n")).toBe(2);
  });

  it("formats one progress line", () => {
    const progress = read(["Collecting a==1", "  Downloading a-1.whl (12.5 MB)"]);
    expect(formatPipProgress(progress, 76, 75_000)).toBe(
      "1 of ~76 packages fetched (13 MB downloaded), 1 min 15 s so far",
    );
    expect(formatPipProgress({ ...progress, unpacking: true }, 76, 5_000)).toBe(
      "all 1 packages fetched, installing them (13 MB downloaded), 5 s so far",
    );
    expect(formatPipProgress(read(["python-env: creating /repo/.tern/python/mlserver"]), 76, 20_000)).toBe(
      "creating the venv and starting pip, 20 s so far",
    );
  });
});
