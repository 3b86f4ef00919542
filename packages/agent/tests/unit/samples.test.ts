import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { accuracy, readIris, trainIris } from "../../../../samples/scripts/iris-training.js";
import { createOnnxRuntime } from "../../src/runtime/onnx-runtime.js";
import { IRIS_ROWS, REPO_ROOT } from "./helpers.js";

const runtime = createOnnxRuntime();
const load = (name: string) =>
  runtime.load(join(REPO_ROOT, "samples/models", name, "model.onnx"), { model: name, version: 1, parameters: {} });
const f32 = (name: string, shape: number[], values: number[]) => ({
  name,
  datatype: "FP32" as const,
  shape,
  data: Float32Array.from(values),
});

describe("sample models", () => {
  it("trains iris to at least 0.95 training accuracy, deterministically", () => {
    const data = readIris(join(REPO_ROOT, "samples/iris/iris.csv"));
    expect(data.features).toHaveLength(150);
    const a = trainIris(data, { iterations: 800 });
    const b = trainIris(data, { iterations: 800 });
    expect(a).toEqual(b);
    expect(accuracy(trainIris(data), data)).toBeGreaterThanOrEqual(0.95);
  });

  it("the shipped iris model classifies known rows and its probabilities sum to 1", async () => {
    const m = await load("iris");
    expect(m.signature.inputs).toEqual([{ name: "predict", datatype: "FP32", shape: [-1, 4] }]);
    const out = await m.infer(
      [
        f32(
          "predict",
          [IRIS_ROWS.length, 4],
          IRIS_ROWS.flatMap((r) => r.features),
        ),
      ],
      [],
    );
    const label = out.find((o) => o.name === "label")!;
    expect(label.datatype).toBe("INT64");
    expect(Array.from(label.data as BigInt64Array, Number)).toEqual(IRIS_ROWS.map((r) => r.label));
    const probs = out.find((o) => o.name === "probabilities")!.data as Float32Array;
    for (let i = 0; i < IRIS_ROWS.length; i++)
      expect(probs[i * 3]! + probs[i * 3 + 1]! + probs[i * 3 + 2]!).toBeCloseTo(1, 5);
    await m.unload();
  });

  it("the shipped iris model gets at least 0.95 of the whole CSV right", async () => {
    const data = readIris(join(REPO_ROOT, "samples/iris/iris.csv"));
    const m = await load("iris");
    const [, label] = await m.infer([f32("predict", [150, 4], data.features.flat())], []);
    const predicted = Array.from(label!.data as BigInt64Array, Number);
    const correct = predicted.filter((p, i) => p === data.labels[i]).length;
    expect(correct / 150).toBeGreaterThanOrEqual(0.95);
    await m.unload();
  });

  it("add10, mul10 and sum-diff compute what their names say", async () => {
    const add = await load("add10");
    const mul = await load("mul10");
    const sd = await load("sum-diff");
    const [y1] = await add.infer([f32("x", [1, 3], [1, 2, 3])], []);
    expect(Array.from(y1!.data as Float32Array)).toEqual([11, 12, 13]);
    const [y2] = await mul.infer([f32("x", [1, 3], [1, 2, 3])], []);
    expect(Array.from(y2!.data as Float32Array)).toEqual([10, 20, 30]);
    const [sum, diff] = await sd.infer([f32("a", [1, 2], [5, 7]), f32("b", [1, 2], [1, 2])], []);
    expect(Array.from(sum!.data as Float32Array)).toEqual([6, 9]);
    expect(Array.from(diff!.data as Float32Array)).toEqual([4, 5]);
    await Promise.all([add.unload(), mul.unload(), sd.unload()]);
  });

  it("choose yields x on one output and an empty tensor on the other", async () => {
    const m = await load("choose");
    const [p1, n1] = await m.infer([f32("x", [1, 2], [1, 2])], []);
    expect(p1!.shape).toEqual([1, 2]);
    expect(n1!.shape).toEqual([0, 2]);
    const [p2, n2] = await m.infer([f32("x", [1, 2], [-3, 1])], []);
    expect(p2!.shape).toEqual([0, 2]);
    expect(Array.from(n2!.data as Float32Array)).toEqual([-3, 1]);
    await m.unload();
  });

  it("negate reads y and answers z = -y", async () => {
    const m = await load("negate");
    expect(m.signature.inputs).toEqual([{ name: "y", datatype: "FP32", shape: [-1, -1] }]);
    const [z] = await m.infer([f32("y", [1, 3], [1, -2, 0.5])], []);
    expect(z!.name).toBe("z");
    expect(Array.from(z!.data as Float32Array)).toEqual([-1, 2, -0.5]);
    await m.unload();
  });
});
