"""Trainer contract v1 for the seed article's model: torch.nn.Linear fitted
by full-batch SGD on the mean squared error.

modelci gives: MODELCI_DATA (a directory with train.csv, the target in the
last column), MODELCI_OUT (empty), MODELCI_PARAMS (JSON) and MODELCI_SEED.
This writes $MODELCI_OUT/model/model.pt and $MODELCI_OUT/train.json
({"loss": [one per epoch]}). The trainer never sees test rows.

Unlike the article, the features are standardised with the training rows'
mean and deviation (stored with the weights, so that evaluation applies the
same transform): raw diabetes features make SGD at lr 0.01 diverge.
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
    return header[:-1], header[-1], values[:, :-1], values[:, -1:]


class LinearRegressionModel(torch.nn.Module):
    def __init__(self, input_dim):
        super().__init__()
        self.linear = torch.nn.Linear(input_dim, 1)

    def forward(self, x):
        return self.linear(x)


def main():
    data, out = os.environ["MODELCI_DATA"], os.environ["MODELCI_OUT"]
    params = json.loads(os.environ.get("MODELCI_PARAMS") or "{}")
    epochs = int(params.get("epochs", 100))
    lr = float(params.get("learning_rate", 0.01))
    torch.manual_seed(int(os.environ.get("MODELCI_SEED", "0")))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"training on {device}", flush=True)

    features, target, x, y = load(os.path.join(data, "train.csv"))
    mean = x.mean(dim=0)
    scale = x.std(dim=0, unbiased=False)
    scale[scale == 0] = 1.0
    x = ((x - mean) / scale).float().to(device)
    y = y.float().to(device)

    model = LinearRegressionModel(x.shape[1]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    criterion = torch.nn.MSELoss()
    losses = []
    for epoch in range(epochs):
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if epoch % 10 == 0:
            print(f"Epoch {epoch + 1}/{epochs}, Loss: {loss.item()}", flush=True)

    os.makedirs(os.path.join(out, "model"), exist_ok=True)
    torch.save(
        {
            "features": features,
            "target": target,
            "mean": mean,
            "scale": scale,
            "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
        },
        os.path.join(out, "model", "model.pt"),
    )
    with open(os.path.join(out, "train.json"), "w") as f:
        json.dump({"loss": losses}, f)


if __name__ == "__main__":
    main()
