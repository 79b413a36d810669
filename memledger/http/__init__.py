"""The HTTP API (REST under /v1, OpenAPI at /openapi.json and /docs): a thin adapter over the App.

    app.py         create_app(settings, insecure_no_auth=False): routers, errors, middleware
    auth.py        API keys -> Principal -> the request's scoped App (one dependency)
    writes.py      store, update, tag, forget, recall, batch commands, sessions
    reads.py       memories (query, one, history), sessions, hierarchy, stats, trending, analytics, feed
    operations.py  health, processing status, maintenance
    problems.py    every error as application/problem+json, from one table
    headers.py     ETag / If-Match, consistency tokens, cursors
    middleware.py  body size, media type and strict JSON checks; Server-Timing
    server.py      run (uvicorn) and serving (a background server for tests)
"""

from __future__ import annotations

from .app import create_app
from .server import run, serving

__all__ = ["create_app", "run", "serving"]
