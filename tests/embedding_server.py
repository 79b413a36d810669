"""A real OpenAI-compatible embeddings server on a free loopback port, serving the local
model's vectors (`POST /v1/embeddings`, the OpenAI response shape), for the endpoint embedder.

    with EmbeddingServer({"minilm-meanmax": LocalEmbedder("all-MiniLM-L6-v2-meanmax")}) as server:
        server.url   # http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from projections.embedders import Embedder


class EmbeddingServer:
    def __init__(self, models: dict[str, Embedder], api_key: str | None = None):
        self.models, self.api_key, self.requests, self.texts = models, api_key, 0, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                owner.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        body = json.loads(request.rfile.read(int(request.headers["Content-Length"])))
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._answer(request, 401, {"error": {"message": "bad key"}})
        if request.path != "/v1/embeddings" or body.get("model") not in self.models:
            return self._answer(request, 404, {"error": {"message": f"no model {body.get('model')!r}"}})
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.requests, self.texts = self.requests + 1, self.texts + len(texts)
        vectors = self.models[body["model"]].embed(texts)
        self._answer(request, 200, {"object": "list", "model": body["model"],
                                    "data": [{"object": "embedding", "index": i, "embedding": v}
                                             for i, v in enumerate(vectors)],
                                    "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def __enter__(self) -> EmbeddingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
