"""The seed article's Flask prediction service, as the peer of `modelci serve`.

Same route and payloads as the article (`{"input": ...}` in, `{"prediction": ...}`
out), serving the same linear model document that modelci writes, with numpy.
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


app = Flask(__name__)
model = Model(os.environ.get("MODELCI_MODEL", "/model"))


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json()
    prediction = model.predict(data["input"])
    return jsonify({"prediction": prediction.tolist()})


@app.route("/healthz", methods=["GET"])
def healthz():
    return jsonify({"status": "ok"})
