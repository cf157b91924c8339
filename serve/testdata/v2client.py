"""An Open Inference Protocol (KServe V2) REST client, written from the
specification (github.com/kserve/open-inference-protocol,
specification/protocol/inference_rest.md) with requests and numpy only.

    python3 v2client.py BASE_URL MODEL_NAME ROWS.json

ROWS.json holds the rows to send, [[x1, ...], ...]. The client checks what
the specification requires of the server (health, server and model
metadata, the inference response's fields) and that the three ways of
sending the rows (a flat [rows, features] tensor, the same nested, and one
tensor per feature, in reverse order) get the same answer, then prints
{"predictions": [...], "datatype": ...} on stdout. Tensors are sent in the
datatype the model's metadata gives for its input (FP64 or FP32). Any
violation exits 1, saying what was wrong on stderr.
"""

import json
import sys

import numpy as np
import requests


def check(cond, what):
    if not cond:
        print("v2client: " + what, file=sys.stderr)
        sys.exit(1)


def get(session, url, status=200):
    r = session.get(url, timeout=10)
    check(r.status_code == status, "GET %s: %d %s, want %d" % (url, r.status_code, r.text, status))
    return r.json()


def infer(session, url, body):
    r = session.post(url, json=body, timeout=10)
    check(r.status_code == 200, "POST %s: %d %s" % (url, r.status_code, r.text))
    check(r.headers.get("Content-Type", "").startswith("application/json"), "content type %r" % r.headers.get("Content-Type"))
    return r.json()


def main():
    base, name, rows_file = sys.argv[1:4]
    with open(rows_file) as f:
        rows = np.asarray(json.load(f), dtype=np.float64)
    n, p = rows.shape
    s = requests.Session()

    # Health: 200 means live, ready.
    get(s, base + "/v2/health/live")
    get(s, base + "/v2/health/ready")

    # Server metadata: name, version, extensions.
    server = get(s, base + "/v2")
    check(isinstance(server.get("name"), str) and server["name"], "server metadata name: %r" % server)
    check(isinstance(server.get("version"), str), "server metadata version: %r" % server)
    check(isinstance(server.get("extensions"), list), "server metadata extensions: %r" % server)

    # Model metadata: name, versions, platform, inputs, outputs.
    md = get(s, base + "/v2/models/" + name)
    check(md.get("name") == name, "model metadata name %r, want %r" % (md.get("name"), name))
    check(isinstance(md.get("platform"), str) and md["platform"], "platform: %r" % md)
    for key in ("inputs", "outputs"):
        check(isinstance(md.get(key), list) and md[key], "%s: %r" % (key, md))
        for t in md[key]:
            check(set(t) >= {"name", "datatype", "shape"}, "metadata tensor %r" % t)
    inp, out = md["inputs"][0], md["outputs"][0]
    check(inp["shape"] == [-1, p], "input shape %r, want [-1, %d]" % (inp["shape"], p))
    check(out["shape"] == [-1], "output shape %r" % out["shape"])
    dtype = {"FP64": np.float64, "FP32": np.float32}.get(inp["datatype"])
    check(dtype is not None, "input datatype %r: this client sends FP64 or FP32" % inp["datatype"])
    x = rows.astype(dtype)
    version = md["versions"][0]
    get(s, base + "/v2/models/%s/ready" % name)
    get(s, base + "/v2/models/%s/versions/%s/ready" % (name, version))

    url = base + "/v2/models/%s/infer" % name
    bodies = {
        "flat": {"id": "flat-1", "inputs": [{"name": inp["name"], "shape": [n, p], "datatype": inp["datatype"], "data": x.flatten().tolist()}]},
        "nested": {"id": "nested-1", "inputs": [{"name": inp["name"], "shape": [n, p], "datatype": inp["datatype"], "data": x.tolist()}]},
        "per feature": {
            "id": "features-1",
            "inputs": [
                {"name": f["name"], "shape": [n], "datatype": inp["datatype"], "data": x[:, j].tolist()}
                for j, f in reversed(list(enumerate(md["features"])))
            ],
        },
    }
    answers = {}
    for kind, body in bodies.items():
        resp = infer(s, url, body)
        check(resp.get("model_name") == name, "%s: model_name %r" % (kind, resp.get("model_name")))
        check(resp.get("id") == body["id"], "%s: id %r, want %r" % (kind, resp.get("id"), body["id"]))
        outs = resp.get("outputs")
        check(isinstance(outs, list) and len(outs) == 1, "%s: outputs %r" % (kind, outs))
        o = outs[0]
        check(o.get("name") == out["name"], "%s: output name %r, want %r" % (kind, o.get("name"), out["name"]))
        check(o.get("datatype") == out["datatype"], "%s: output datatype %r, want %r" % (kind, o.get("datatype"), out["datatype"]))
        check(o.get("shape") == [n], "%s: output shape %r, want [%d]" % (kind, o.get("shape"), n))
        data = np.asarray(o.get("data"), dtype=dtype if o["datatype"] == "FP32" else np.float64)
        check(data.shape == (n,), "%s: %d values for shape [%d]" % (kind, data.size, n))
        answers[kind] = data
    check(np.array_equal(answers["flat"], answers["nested"]), "flat and nested data answer differently")
    check(np.array_equal(answers["flat"], answers["per feature"]), "one tensor and one tensor per feature answer differently")

    # The versioned route answers the same; an unknown model is a 404 with an error.
    resp = infer(s, base + "/v2/models/%s/versions/%s/infer" % (name, version), bodies["flat"])
    check(np.array_equal(np.asarray(resp["outputs"][0]["data"], dtype=answers["flat"].dtype), answers["flat"]), "versioned route answers differently")
    r = s.post(base + "/v2/models/%s-not/infer" % name, json=bodies["flat"], timeout=10)
    check(r.status_code == 404 and isinstance(r.json().get("error"), str), "unknown model: %d %s" % (r.status_code, r.text))
    bad = {"inputs": [dict(bodies["flat"]["inputs"][0], datatype="UINT8")]}
    r = s.post(url, json=bad, timeout=10)
    check(r.status_code == 400 and "UINT8" in r.json().get("error", ""), "UINT8 input: %d %s" % (r.status_code, r.text))

    print(json.dumps({"predictions": answers["flat"].tolist(), "datatype": out["datatype"]}))


if __name__ == "__main__":
    main()
