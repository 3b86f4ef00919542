import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..");

/** Class indices of the sample model's `label` output (samples/README.md). */
export const IRIS_CLASSES = ["setosa", "versicolor", "virginica"] as const;

export interface IrisRow {
  /** 0-based data row in samples/iris/iris.csv (header excluded). */
  row: number;
  features: [number, number, number, number];
  label: number;
}

/** Every labelled row of samples/iris/iris.csv. */
export function irisRows(): IrisRow[] {
  const lines = readFileSync(resolve(repoRoot, "samples/iris/iris.csv"), "utf8").trim().split("\n").slice(1);
  return lines.map((line, row) => {
    const cells = line.split(",");
    const label = IRIS_CLASSES.indexOf(cells[4]!.trim() as (typeof IRIS_CLASSES)[number]);
    if (label < 0) throw new Error(`iris.csv row ${row}: unknown species ${cells[4]}`);
    return { row, features: cells.slice(0, 4).map(Number) as IrisRow["features"], label };
  });
}

/**
 * Five rows of each class spread over the file (50 rows per class, in order). The sample classifier is a plain
 * logistic regression with 98% training accuracy: three rows near the versicolor/virginica boundary (70, 83, 133)
 * are misclassified by the model itself, so the picks avoid them: the test checks serving, not the model's accuracy.
 */
export function knownIrisRows(): IrisRow[] {
  const all = irisRows();
  return [0, 12, 25, 37, 49, 50, 62, 75, 88, 99, 100, 112, 125, 137, 149].map((i) => all[i]!);
}

/** An OIP REST request for one row (or several, batched). */
export function irisRequest(...rows: IrisRow[]): string {
  return JSON.stringify({
    inputs: [{ name: "predict", shape: [rows.length, 4], datatype: "FP32", data: rows.flatMap((r) => r.features) }],
  });
}

export interface IrisAnswer {
  labels: number[];
  probabilities: number[][];
}

interface OipResponse {
  model_name?: string;
  outputs?: Array<{ name: string; shape: number[]; datatype: string; data: number[] }>;
  error?: string;
}

/** Reads labels and probabilities from an OIP REST response body. */
export function parseIrisAnswer(body: unknown): IrisAnswer {
  const outputs = (body as OipResponse).outputs ?? [];
  const label = outputs.find((o) => o.name === "label");
  const probs = outputs.find((o) => o.name === "probabilities");
  if (!label || !probs) throw new Error(`not an iris answer: ${JSON.stringify(body)}`);
  const probabilities: number[][] = [];
  for (let i = 0; i < label.data.length; i++) probabilities.push(probs.data.slice(i * 3, i * 3 + 3).map(Number));
  return { labels: label.data.map(Number), probabilities };
}

/** POSTs to `<base>/v2/models/iris/infer` with a client deadline; returns status and parsed JSON body. */
export async function inferIris(
  base: string,
  rows: IrisRow[],
  timeoutMs = 5000,
): Promise<{ status: number; body: OipResponse }> {
  const res = await fetch(`${base}/v2/models/iris/infer`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: irisRequest(...rows),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return { status: res.status, body: (await res.json()) as OipResponse };
}
