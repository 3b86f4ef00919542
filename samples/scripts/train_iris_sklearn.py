"""Trains the sklearn iris classifier that MLServer serves, from the shipped CSV.

    .tern/python/mlserver/bin/python samples/scripts/train_iris_sklearn.py samples/iris/iris.csv OUT_DIR [--no-settings]

Writes OUT_DIR/model.joblib (a scikit-learn LogisticRegression; predict() answers the class index 0 setosa,
1 versicolor, 2 virginica) and, unless --no-settings, OUT_DIR/model-settings.json as Seldon's sample bucket has it
(implementation mlserver_sklearn.SKLearnModel, uri ./model.joblib). Run it with the Python of the mlserver venv
(scripts/python-env.sh mlserver): the model must be unpickled by the same scikit-learn version that trained it.
"""

import csv
import json
import os
import sys

import joblib
from sklearn.linear_model import LogisticRegression

CLASSES = ["setosa", "versicolor", "virginica"]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        sys.exit("usage: train_iris_sklearn.py IRIS_CSV OUT_DIR [--no-settings]")
    csv_path, out_dir = args
    features, labels = [], []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            features.append([float(row[k]) for k in ("sepal_length", "sepal_width", "petal_length", "petal_width")])
            labels.append(CLASSES.index(row["species"].strip()))
    # lbfgs from zeros on the full data: the same model on every run.
    model = LogisticRegression(max_iter=1000)
    model.fit(features, labels)
    os.makedirs(out_dir, exist_ok=True)
    joblib.dump(model, os.path.join(out_dir, "model.joblib"))
    if "--no-settings" not in sys.argv:
        settings = {
            "name": "iris",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v0.1.0"},
        }
        with open(os.path.join(out_dir, "model-settings.json"), "w") as f:
            json.dump(settings, f, indent=2)
            f.write("\n")
    print(f"trained on {len(labels)} rows, training accuracy {model.score(features, labels):.3f}: {out_dir}")


if __name__ == "__main__":
    main()
