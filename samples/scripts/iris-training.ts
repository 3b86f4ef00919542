/**
 * Multinomial logistic regression on the iris data, in plain TypeScript: full-batch gradient descent on standardised
 * features, fixed iteration count and zero initialisation, so the result is the same on every run and machine
 * (only float64 arithmetic in a fixed order).
 */
import { readFileSync } from "node:fs";

export const IRIS_CLASSES = ["setosa", "versicolor", "virginica"] as const;

export interface IrisData {
  features: number[][];
  labels: number[];
}

/** Reads the 150-row CSV (header: sepal_length,sepal_width,petal_length,petal_width,species). */
export function readIris(path: string): IrisData {
  const lines = readFileSync(path, "utf8").trim().split("\n").slice(1);
  const features: number[][] = [];
  const labels: number[] = [];
  for (const [i, line] of lines.entries()) {
    const cells = line.split(",");
    const species = cells[4]?.trim() ?? "";
    const label = IRIS_CLASSES.indexOf(species as (typeof IRIS_CLASSES)[number]);
    if (cells.length !== 5 || label < 0)
      throw new Error(`${path}:${i + 2}: expected 4 numbers and a species, got "${line}"`);
    features.push(cells.slice(0, 4).map(Number));
    labels.push(label);
  }
  return { features, labels };
}

export interface LinearModel {
  /** weights[feature][class], applied to RAW (unstandardised) features. */
  weights: number[][];
  bias: number[];
}

export interface TrainOptions {
  /** @default 3000 */
  iterations?: number;
  /** @default 0.5 */
  learningRate?: number;
  /** L2 penalty on the weights. @default 1e-4 */
  l2?: number;
}

function softmaxRow(logits: number[]): number[] {
  const max = Math.max(...logits);
  const exps = logits.map((v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((v) => v / sum);
}

export function logits(model: LinearModel, x: number[]): number[] {
  return model.bias.map((b, k) => x.reduce((acc, xj, j) => acc + xj * (model.weights[j]?.[k] ?? 0), b));
}

export function accuracy(model: LinearModel, data: IrisData): number {
  let correct = 0;
  for (const [i, x] of data.features.entries()) {
    const l = logits(model, x);
    if (l.indexOf(Math.max(...l)) === data.labels[i]) correct++;
  }
  return correct / data.features.length;
}

/**
 * Trains on standardised features (GD converges in a few thousand steps there) and folds the standardisation into the
 * returned weights, so the ONNX graph is a single MatMul + Add on raw measurements.
 */
export function trainIris(data: IrisData, options: TrainOptions = {}): LinearModel {
  const iterations = options.iterations ?? 3000;
  const lr = options.learningRate ?? 0.5;
  const l2 = options.l2 ?? 1e-4;
  const n = data.features.length;
  const d = 4;
  const c = IRIS_CLASSES.length;
  const mean = Array.from({ length: d }, (_, j) => data.features.reduce((a, x) => a + (x[j] ?? 0), 0) / n);
  const std = Array.from({ length: d }, (_, j) =>
    Math.sqrt(data.features.reduce((a, x) => a + ((x[j] ?? 0) - (mean[j] ?? 0)) ** 2, 0) / n),
  );
  const z = data.features.map((x) => x.map((v, j) => (v - (mean[j] ?? 0)) / (std[j] ?? 1)));
  const w = Array.from({ length: d }, () => new Array<number>(c).fill(0));
  const b = new Array<number>(c).fill(0);
  for (let it = 0; it < iterations; it++) {
    const gw = Array.from({ length: d }, () => new Array<number>(c).fill(0));
    const gb = new Array<number>(c).fill(0);
    for (let i = 0; i < n; i++) {
      const zi = z[i] ?? [];
      const p = softmaxRow(logits({ weights: w, bias: b }, zi));
      for (let k = 0; k < c; k++) {
        const err = (p[k] ?? 0) - (data.labels[i] === k ? 1 : 0);
        gb[k] = (gb[k] ?? 0) + err / n;
        for (let j = 0; j < d; j++) gw[j]![k] = (gw[j]![k] ?? 0) + (err * (zi[j] ?? 0)) / n;
      }
    }
    for (let k = 0; k < c; k++) {
      b[k] = (b[k] ?? 0) - lr * (gb[k] ?? 0);
      for (let j = 0; j < d; j++) w[j]![k] = (w[j]![k] ?? 0) - lr * ((gw[j]![k] ?? 0) + l2 * (w[j]![k] ?? 0));
    }
  }
  const weights = w.map((row, j) => row.map((v) => v / (std[j] ?? 1)));
  const bias = b.map((bk, k) => bk - weights.reduce((acc, row, j) => acc + (row[k] ?? 0) * (mean[j] ?? 0), 0));
  return { weights, bias };
}
