"""An evaluator under evaluator contract v1, for the tests: it applies the
built-in linear model document to test.csv and writes squared errors."""
import csv
import json
import os

with open(os.path.join(os.environ["MODELCI_MODEL"], "model.json")) as f:
    m = json.load(f)
with open(os.path.join(os.environ["MODELCI_DATA"], "test.csv"), newline="") as f:
    rows = list(csv.reader(f))
header, rows = rows[0], rows[1:]
assert header == m["features"] + [m["target"]], header

losses = []
for r in rows:
    x, y = [float(v) for v in r[:-1]], float(r[-1])
    pred = m["bias"] + sum(w * (v - mu) / s for w, v, mu, s in zip(m["weights"], x, m["mean"], m["scale"]))
    losses.append((pred - y) ** 2)
print(f"evaluated {len(rows)} rows")

with open(os.path.join(os.environ["MODELCI_OUT"], "predictions.json"), "w") as f:
    json.dump({"per_example_loss": losses}, f)
