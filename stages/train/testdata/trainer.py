"""A trainer under trainer contract v1, for the tests: gradient descent on
the intercept alone. It records what it saw so the tests can check it."""
import csv
import json
import os
import sys

data_dir = os.environ["MODELCI_DATA"]
out = os.environ["MODELCI_OUT"]
params = json.loads(os.environ["MODELCI_PARAMS"])
seed = int(os.environ["MODELCI_SEED"])

with open(os.path.join(data_dir, "train.csv"), newline="") as f:
    rows = list(csv.reader(f))
header, rows = rows[0], rows[1:]
y = [float(r[-1]) for r in rows]

bias, lr, losses = 0.0, params.get("learning_rate", 0.1), []
for epoch in range(params.get("epochs", 3)):
    bias -= lr * 2 * sum(bias - v for v in y) / len(y)
    losses.append(sum((bias - v) ** 2 for v in y) / len(y))
    print(f"epoch {epoch}: loss {losses[-1]:.3f}")
print("trainer done", file=sys.stderr)

os.makedirs(os.path.join(out, "model"))
with open(os.path.join(out, "model", "intercept.json"), "w") as f:
    json.dump({"bias": bias, "header": header, "rows": len(rows), "seed": seed,
               "params": params, "data_files": sorted(os.listdir(data_dir))}, f)
with open(os.path.join(out, "train.json"), "w") as f:
    json.dump({"loss": losses}, f)
