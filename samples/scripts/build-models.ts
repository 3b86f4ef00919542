/**
 * Builds the sample ONNX models into samples/models/<name>/model.onnx. Run from the repo root:
 *   node --import tsx samples/scripts/build-models.ts
 * The output is deterministic; the generated files are committed so nothing needs building before `npm start`.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { accuracy, IRIS_CLASSES, readIris, trainIris } from "./iris-training.js";
import { encodeModel, floatTensor, graph, int64Tensor, node, valueInfo } from "./onnx-graph.js";

const samplesDir = join(dirname(fileURLToPath(import.meta.url)), "..");

function write(name: string, bytes: Uint8Array): void {
  const dir = join(samplesDir, "models", name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "model.onnx"), bytes);
  console.log(`wrote samples/models/${name}/model.onnx (${bytes.length} bytes)`);
}

function buildIris(): void {
  const data = readIris(join(samplesDir, "iris", "iris.csv"));
  const model = trainIris(data);
  const acc = accuracy(model, data);
  console.log(`iris: training accuracy ${acc.toFixed(4)} on ${data.features.length} rows`);
  if (acc < 0.95) throw new Error(`iris training accuracy ${acc} is below 0.95: refusing to write the model`);
  const g = graph({
    name: "iris_logreg",
    docString: `multinomial logistic regression; label index -> ${IRIS_CLASSES.join(", ")}`,
    inputs: [valueInfo("predict", "FLOAT", ["batch", 4])],
    outputs: [valueInfo("probabilities", "FLOAT", ["batch", 3]), valueInfo("label", "INT64", ["batch"])],
    initializers: [floatTensor("W", [4, 3], model.weights.flat()), floatTensor("B", [3], model.bias)],
    nodes: [
      node("MatMul", ["predict", "W"], ["xw"]),
      node("Add", ["xw", "B"], ["logits"]),
      node("Softmax", ["logits"], ["probabilities"], { axis: 1 }),
      node("ArgMax", ["logits"], ["label"], { axis: 1, keepdims: 0 }),
    ],
  });
  write("iris", encodeModel(g, "Tern sample: iris classifier trained by samples/scripts/build-models.ts"));
}

function buildElementwise(name: string, op: "Add" | "Mul", constant: number): void {
  const g = graph({
    name,
    inputs: [valueInfo("x", "FLOAT", ["batch", "n"])],
    outputs: [valueInfo("y", "FLOAT", ["batch", "n"])],
    initializers: [floatTensor("c", [], [constant])],
    nodes: [node(op, ["x", "c"], ["y"])],
  });
  write(name, encodeModel(g, `Tern sample: y = x ${op === "Add" ? "+" : "*"} ${constant}`));
}

function buildSumDiff(): void {
  const g = graph({
    name: "sum_diff",
    inputs: [valueInfo("a", "FLOAT", ["batch", "n"]), valueInfo("b", "FLOAT", ["batch", "n"])],
    outputs: [valueInfo("sum", "FLOAT", ["batch", "n"]), valueInfo("diff", "FLOAT", ["batch", "n"])],
    nodes: [node("Add", ["a", "b"], ["sum"]), node("Sub", ["a", "b"], ["diff"])],
  });
  write("sum-diff", encodeModel(g, "Tern sample: sum = a + b, diff = a - b"));
}

/**
 * `negate`: z = -y. It reads a tensor called `y`, what add10 and mul10 answer, so either answer feeds it without a
 * tensorMap: the `any-branch` sample pipeline joins the two with `inputsJoinType: any`.
 */
function buildNegate(): void {
  const g = graph({
    name: "negate",
    inputs: [valueInfo("y", "FLOAT", ["batch", "n"])],
    outputs: [valueInfo("z", "FLOAT", ["batch", "n"])],
    nodes: [node("Neg", ["y"], ["z"])],
  });
  write("negate", encodeModel(g, "Tern sample: z = -y"));
}

/**
 * `choose`: routes x to `positive` when sum(x) > 0, else to `negative`. An ONNX graph always yields every declared
 * output, so the branch not taken yields an EMPTY tensor (shape [0, n]); the Model manifest sets the runtime parameter
 * `drop_empty_outputs=true`, and the agent then omits zero-element outputs from the response, so downstream pipeline
 * steps see that tensor as absent. See samples/README.md.
 */
function buildChoose(): void {
  const branch = (taken: "positive" | "negative") => {
    const other = taken === "positive" ? "negative" : "positive";
    return graph({
      name: `choose_${taken}`,
      inputs: [],
      outputs: [
        valueInfo(`${taken}_${taken}`, "FLOAT", ["batch", "n"]),
        valueInfo(`${taken}_${other}`, "FLOAT", [0, "n"]),
      ],
      initializers: [int64Tensor(`${taken}_zero`, [1], [0]), int64Tensor(`${taken}_axes`, [1], [0])],
      nodes: [
        node("Identity", ["x"], [`${taken}_${taken}`]),
        // Rows [0, 0) of x: an empty tensor that keeps x's datatype and column count.
        node("Slice", ["x", `${taken}_zero`, `${taken}_zero`, `${taken}_axes`], [`${taken}_${other}`]),
      ],
    });
  };
  const thenBranch = branch("positive");
  const elseBranch = branch("negative");
  // The If node's outputs are positional: output 0 is `positive`, output 1 is `negative` in both branches.
  elseBranch.output.reverse();
  const g = graph({
    name: "choose",
    inputs: [valueInfo("x", "FLOAT", ["batch", "n"])],
    outputs: [valueInfo("positive", "FLOAT", ["rows_p", "n"]), valueInfo("negative", "FLOAT", ["rows_n", "n"])],
    initializers: [floatTensor("zero", [], [0])],
    nodes: [
      node("ReduceSum", ["x"], ["total"], { keepdims: 0 }),
      node("Greater", ["total", "zero"], ["is_positive"]),
      node("If", ["is_positive"], ["positive", "negative"], { then_branch: thenBranch, else_branch: elseBranch }),
    ],
  });
  write(
    "choose",
    encodeModel(g, "Tern sample: x goes to `positive` if sum(x) > 0 else to `negative`; the other is empty"),
  );
}

buildIris();
buildElementwise("add10", "Add", 10);
buildElementwise("mul10", "Mul", 10);
buildSumDiff();
buildChoose();
buildNegate();
