"""The seed article's Flask prediction service, as the peer of `modelci serve`.

Same route and payloads as the article (`{"input": ...}` in, `{"prediction": ...}`
out), serving the same model as modelci (models.py: numpy for model.json,
torch for model.pt). Run it under gunicorn with sync workers:

    MODELCI_MODEL=DIR gunicorn -w 5 -b 127.0.0.1:8002 --chdir bench/peers flask_predict:app
"""

import os

from flask import Flask, jsonify, request

import models

app = Flask(__name__)
model = models.load(os.environ.get("MODELCI_MODEL", "/model"))


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json()
    prediction = model.predict(data["input"])
    return jsonify({"prediction": prediction.tolist()})


@app.route("/healthz", methods=["GET"])
def healthz():
    return jsonify({"status": "ok"})
