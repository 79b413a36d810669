"""The leanest HTTP/1.1 client the standard library has, for the latency figures of `bench http`.

The Python client (httpx) spends a few hundred microseconds of its own on each request, about
as much as the server's whole route; an agent in another language does not pay that. Figures
measured through this client show what the API costs; those through `memledger.client` show
what a Python agent sees.
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

__all__ = ["RawHttp"]


class RawHttp:
    """One keep-alive connection; every call fails on a status of 400 or more."""

    def __init__(self, base_url: str, key: str):
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
        self.auth = {"Authorization": f"Bearer {key}"}

    def get(self, path: str, params: Mapping[str, Any]) -> bytes:
        return self._call("GET", f"{path}?{urlencode(params, doseq=True)}", None, self.auth)

    def post(self, path: str, body: object) -> bytes:
        return self._call("POST", path, orjson.dumps(body), {**self.auth, "Content-Type": "application/json"})

    def _call(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
        try:
            response = self._send(method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # The server closes a connection idle past its keep-alive timeout (uvicorn: 5 s) between
            # figures; as any client does, open another and send again.
            self.conn.close()
            response = self._send(method, path, body, headers)
        data = response.read()
        if response.status >= 400:
            raise AssertionError(f"{method} {path} answered {response.status}: {data[:300]!r}")
        return data

    def _send(self, method: str, path: str, body: bytes | None,
              headers: Mapping[str, str]) -> http.client.HTTPResponse:
        self.conn.request(method, path, body, dict(headers))
        return self.conn.getresponse()

    def close(self) -> None:
        self.conn.close()
