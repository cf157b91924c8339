"""Evaluator contract v1 for train.py's model.

modelci gives: MODELCI_MODEL (the trained model directory), MODELCI_DATA (a
directory with test.csv: the features, then the target) and MODELCI_OUT
(empty). This loads model.pt with torch.jit.load alone (nothing of this
example is imported: the file is self-contained TorchScript), predicts every
test row from its raw float32 features and writes
$MODELCI_OUT/predictions.json: {"per_example_loss": [squared error per
row], "predictions": [the model's answer per row]}, in test.csv's order.
modelci's smoke test sends the same rows to the built image and compares its
answers with these predictions.
"""

import csv
import json
import os

import torch


def main():
    model_dir, data, out = os.environ["MODELCI_MODEL"], os.environ["MODELCI_DATA"], os.environ["MODELCI_OUT"]
    with open(os.path.join(data, "test.csv"), newline="") as f:
        rows = [r for r in list(csv.reader(f))[1:] if r]
    x = torch.tensor([[float(v) for v in r[:-1]] for r in rows], dtype=torch.float32)
    y = [float(r[-1]) for r in rows]
    model = torch.jit.load(os.path.join(model_dir, "model.pt"))
    model.eval()
    with torch.no_grad():
        pred = [float(v) for v in model(x)]
    loss = [(p - t) ** 2 for p, t in zip(pred, y)]
    with open(os.path.join(out, "predictions.json"), "w") as f:
        json.dump({"per_example_loss": loss, "predictions": pred}, f)


if __name__ == "__main__":
    main()
