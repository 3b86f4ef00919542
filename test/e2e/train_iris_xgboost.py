"""Trains a small xgboost classifier on samples/iris/iris.csv for the e2e test of the MLServer runtime.

    python test/e2e/train_iris_xgboost.py samples/iris/iris.csv OUT_DIR

Writes OUT_DIR/model.json (xgboost's own JSON format, which MLServer's xgboost runtime loads). No model-settings.json:
the agent picks the runtime from the Model's requirements ([xgboost]). Run it with the mlserver venv's python.
"""

import csv
import os
import sys

import xgboost as xgb

CLASSES = ["setosa", "versicolor", "virginica"]


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: train_iris_xgboost.py IRIS_CSV OUT_DIR")
    csv_path, out_dir = sys.argv[1:]
    features, labels = [], []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            features.append([float(row[k]) for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")])
            labels.append(CLASSES.index(row["species"].strip()))
    # One thread and a fixed seed: the same trees on every run.
    model = xgb.XGBClassifier(n_estimators=20, max_depth=2, n_jobs=1, random_state=0)
    model.fit(features, labels)
    os.makedirs(out_dir, exist_ok=True)
    model.save_model(os.path.join(out_dir, "model.json"))
    print(f"trained on {len(labels)} rows, training accuracy {model.score(features, labels):.3f}: {out_dir}")


if __name__ == "__main__":
    main()
