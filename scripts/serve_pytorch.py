#!/usr/bin/env python3
"""The Python peer of `cargo xtask bench-serve`: sentence-transformers behind a small
FastAPI/uvicorn app, serving text-embeddings-inference's `POST /embed` (and `GET /health`) on
the same model as `mtl serve`, one process, torch on `--threads` threads. FastAPI runs the
(synchronous) endpoint in its thread pool, so concurrent requests run side by side, each a
`model.encode` of its own texts: the usual way such a server is written.

    python3 scripts/serve_pytorch.py --model DIR --port 8081 [--threads 2]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _venv  # noqa: E402

_venv.ensure()

import torch  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


class EmbedRequest(BaseModel):
    inputs: str | list[str]
    normalize: bool = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")
    app = FastAPI()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.post("/embed")
    def embed(request: EmbedRequest) -> list[list[float]]:
        texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
        vectors = model.encode(
            texts, batch_size=32, normalize_embeddings=request.normalize, convert_to_numpy=True
        )
        return vectors.tolist()

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
