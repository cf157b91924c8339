"""Evaluator contract v1 for train.py's model.

modelci gives: MODELCI_MODEL (train.py's model directory), MODELCI_DATA (a
directory with test.csv) and MODELCI_OUT; this writes
$MODELCI_OUT/predictions.json: {"per_example_loss": [squared error per test
row, in order]}. modelci averages them and assembles metrics.json.
"""

import json
import os

import torch

from train import LinearRegressionModel, load


def main():
    saved = torch.load(os.path.join(os.environ["MODELCI_MODEL"], "model.pt"), map_location="cpu")
    features, _, x, y = load(os.path.join(os.environ["MODELCI_DATA"], "test.csv"))
    if features != saved["features"]:
        raise SystemExit(f"test.csv has features {features}, the model {saved['features']}")
    model = LinearRegressionModel(len(features))
    model.load_state_dict(saved["state_dict"])
    model.eval()
    with torch.no_grad():
        pred = model(((x - saved["mean"]) / saved["scale"]).float()).double()
    losses = ((pred - y) ** 2).flatten().tolist()
    with open(os.path.join(os.environ["MODELCI_OUT"], "predictions.json"), "w") as f:
        json.dump({"per_example_loss": losses}, f)


if __name__ == "__main__":
    main()
