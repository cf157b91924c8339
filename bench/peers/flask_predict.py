"""The seed article's Flask prediction service, as the peer of `modelci serve`.

Same route and payloads as the article (`{"input": ...}` in, `{"prediction": ...}`
out), serving the same model as modelci: the linear model document modelci
writes, with numpy, or, for an ONNX model, its TorchScript twin model.pt
(examples/pytorch writes both), with torch.
Run it under gunicorn with sync workers:

    MODELCI_MODEL=DIR gunicorn -w 5 -b 127.0.0.1:8002 --chdir bench/peers flask_predict:app
"""

import json
import os

import numpy as np
from flask import Flask, jsonify, request


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
        return y[0] if single else y


app = Flask(__name__)
_dir = os.environ.get("MODELCI_MODEL", "/model")
model = TorchModel(_dir) if os.path.exists(os.path.join(_dir, "model.pt")) else Model(_dir)


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json()
    prediction = model.predict(data["input"])
    return jsonify({"prediction": prediction.tolist()})


@app.route("/healthz", methods=["GET"])
def healthz():
    return jsonify({"status": "ok"})
