"""Trainer contract v1 for the seed article's PyTorch model: torch.nn.Linear
fitted by full-batch SGD on the mean squared error, or, with params
{hidden: N}, a small MLP (Linear, ReLU, Linear).

modelci gives: MODELCI_DATA (a directory with train.csv: the features, then
the target), MODELCI_OUT (empty), MODELCI_PARAMS (JSON) and MODELCI_SEED.
This writes, under $MODELCI_OUT/model/:
  model.onnx  what modelci's runtime serves (train.format: onnx)
  model.pt    the same model as TorchScript: torch.jit.load() it in any
              python3 with torch, no code of this example needed
and $MODELCI_OUT/train.json ({"loss": [one per epoch]}). The trainer never
sees test rows.

Both files take float32 rows of every feature column, raw, in header order,
and answer one number per row: the standardisation the training needs is
folded into the first layer, so nothing outside the model transforms inputs.
It runs on the GPU when torch sees one (dagger call … --gpu).
"""

import csv
import json
import os

import torch


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], [r for r in rows[1:] if r]
    values = torch.tensor([[float(v) for v in r] for r in body], dtype=torch.float64)
    return header[:-1], values[:, :-1], values[:, -1]


class Regressor(torch.nn.Module):
    """A Linear model, or Linear-ReLU-Linear with hidden > 0; one output
    per row, shape [batch]."""

    def __init__(self, inputs, hidden):
        super().__init__()
        if hidden > 0:
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(inputs, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
            )
        else:
            self.layers = torch.nn.Sequential(torch.nn.Linear(inputs, 1))

    def forward(self, x):
        return self.layers(x).squeeze(1)


def fold_standardisation(model, mean, scale, y_mean, y_scale):
    """Folds z = (x - mean) / scale into the first Linear layer and
    y = y_z * y_scale + y_mean into the last, so that the model takes raw
    features and answers in the target's units: W' = W / scale,
    b' = b - W' mean; then W'' = W y_scale, b'' = b y_scale + y_mean."""
    first, last = model.layers[0], model.layers[-1]
    with torch.no_grad():
        w = first.weight.double() / scale
        b = first.bias.double() - w @ mean
        first.weight.copy_(w.float())
        first.bias.copy_(b.float())
        last.weight.copy_((last.weight.double() * y_scale).float())
        last.bias.copy_((last.bias.double() * y_scale + y_mean).float())


def main():
    data, out = os.environ["MODELCI_DATA"], os.environ["MODELCI_OUT"]
    params = json.loads(os.environ.get("MODELCI_PARAMS") or "{}")
    epochs = int(params.get("epochs", 300))
    lr = float(params.get("learning_rate", 0.1))
    hidden = int(params.get("hidden", 0))
    torch.manual_seed(int(os.environ.get("MODELCI_SEED", "0")))
    torch.use_deterministic_algorithms(True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"training {'an MLP' if hidden else 'a linear model'} on {device}", flush=True)

    features, x, y = load(os.path.join(data, "train.csv"))
    mean = x.mean(dim=0)
    scale = x.std(dim=0, unbiased=False)
    scale[scale == 0] = 1.0
    z = ((x - mean) / scale).float().to(device)
    # The target is standardised too, so one learning rate suits both
    # models; the loss is reported in the target's units.
    y_mean, y_scale = float(y.mean()), float(y.std(unbiased=False)) or 1.0
    yz = ((y - y_mean) / y_scale).float().to(device)

    model = Regressor(len(features), hidden).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = torch.nn.MSELoss()
    losses = []
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = criterion(model(z), yz)
        loss.backward()
        optimizer.step()
        losses.append(loss.item() * y_scale**2)
        if epoch % 50 == 0:
            print(f"epoch {epoch + 1}/{epochs}: loss {losses[-1]:.1f}", flush=True)

    model = model.cpu().eval()
    fold_standardisation(model, mean, scale, y_mean, y_scale)
    os.makedirs(os.path.join(out, "model"))
    example = x[:2].float()
    torch.jit.save(torch.jit.trace(model, example), os.path.join(out, "model", "model.pt"))
    torch.onnx.export(
        model,
        example,
        os.path.join(out, "model", "model.onnx"),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        opset_version=int(params.get("opset", 17)),
    )
    with open(os.path.join(out, "train.json"), "w") as f:
        json.dump({"loss": losses}, f)


if __name__ == "__main__":
    main()
