"""A FastAPI prediction service, as the peer of `modelci serve`: the same
route and payloads as the Flask peer (`{"input": ...}` in,
`{"prediction": ...}` out) and the same model (models.py). Run it under
uvicorn, one worker per core:

    MODELCI_MODEL=DIR python3 -m uvicorn --app-dir bench/peers --workers 1 \
        --host 127.0.0.1 --port 8003 --log-level warning fastapi_predict:app

The handler is async and reads the body itself, FastAPI's fastest way to
take a JSON document (no pydantic model to validate).
"""

import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import models

app = FastAPI()
model = models.load(os.environ.get("MODELCI_MODEL", "/model"))


@app.post("/predict")
async def predict(request: Request):
    data = await request.json()
    return JSONResponse({"prediction": model.predict(data["input"]).tolist()})


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}
