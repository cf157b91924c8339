"""The model the peers of `modelci serve` compute, shared by the Flask and
FastAPI peers: the linear model document modelci writes (model.json), with
numpy, or, for an ONNX model, its TorchScript twin model.pt (examples/pytorch
writes both), with torch.
"""

import json
import os

import numpy as np


class Model:
    """y = bias + sum(weights * (x - mean) / scale), on raw features."""

    def __init__(self, directory):
        with open(os.path.join(directory, "model.json")) as f:
            doc = json.load(f)
        self.mean = np.asarray(doc["mean"], dtype=np.float64)
        self.scale = np.asarray(doc["scale"], dtype=np.float64)
        self.weights = np.asarray(doc["weights"], dtype=np.float64)
        self.bias = float(doc["bias"])

    def predict(self, rows):
        x = np.asarray(rows, dtype=np.float64)
        return ((x - self.mean) / self.scale) @ self.weights + self.bias


class TorchModel:
    """model.pt, TorchScript, on float32 rows of raw features."""

    def __init__(self, directory):
        import torch

        self.torch = torch
        self.model = torch.jit.load(os.path.join(directory, "model.pt"))
        self.model.eval()

    def predict(self, rows):
        x = self.torch.tensor(rows, dtype=self.torch.float32)
        single = x.dim() == 1
        if single:
            x = x.unsqueeze(0)
        with self.torch.no_grad():
            y = self.model(x).double().numpy()
        if y.ndim == 2:
            y = y[:, 0]
        return y[0] if single else y


def load(directory):
    """The model in directory: model.pt when there is one, else model.json."""
    if os.path.exists(os.path.join(directory, "model.pt")):
        return TorchModel(directory)
    return Model(directory)
