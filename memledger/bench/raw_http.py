"""A lean HTTP/1.1 keep-alive client over one socket, for the latency figures of `bench http`.

The Python client (httpx) spends a few hundred microseconds of its own on each request, and
the standard library's `http.client` about a hundred (it parses every response's headers
with the `email` package): as much as the server's whole answer to a cached query. An agent
in another language pays a few microseconds. This client writes the request line and
headers itself and reads the response by its Content-Length, so the figures measured through
it show what the API costs; those through `memledger.client` show what a Python agent sees.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

__all__ = ["RawHttp"]

_RECEIVE = 1 << 16


class RawHttp:
    """One keep-alive connection; every call fails on a status of 400 or more."""

    def __init__(self, base_url: str, key: str):
        parts = urlsplit(base_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.head = f"Host: {self.address[0]}:{self.address[1]}\r\nAuthorization: Bearer {key}\r\n"
        self.sock: socket.socket | None = None
        self.pending = b""  # bytes received past the last response (none, with one request at a time)

    def get(self, path: str, params: Mapping[str, Any]) -> bytes:
        return self._call("GET", f"{path}?{urlencode(params, doseq=True)}", b"", "")

    def post(self, path: str, body: object) -> bytes:
        return self._call("POST", path, orjson.dumps(body), "Content-Type: application/json\r\n")

    def _call(self, method: str, target: str, body: bytes, headers: str) -> bytes:
        request = (f"{method} {target} HTTP/1.1\r\n{self.head}{headers}Content-Length: {len(body)}\r\n\r\n"
                   .encode("latin-1") + body)
        try:
            status, data = self._exchange(request)
        except (ConnectionError, EOFError):
            # The server closes a connection idle past its keep-alive timeout (uvicorn: 5 s) between
            # figures, before reading anything more from it; as any client does, open another and
            # send again.
            self.close()
            status, data = self._exchange(request)
        if status >= 400:
            raise AssertionError(f"{method} {target} answered {status}: {data[:300]!r}")
        return data

    def _exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=60)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pending = b""
        self.sock.sendall(request)
        received = self.pending
        while (end := received.find(b"\r\n\r\n")) < 0:
            received += self._receive()
        lines = received[:end].split(b"\r\n")
        status, length, close = int(lines[0].split(b" ", 2)[1]), None, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise AssertionError("a chunked response: this client reads responses by their Content-Length")
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if length is None:
            raise AssertionError(f"a response without Content-Length: {received[:end]!r}")
        received = received[end + 4:]
        while len(received) < length:
            received += self._receive()
        body, self.pending = received[:length], received[length:]
        if close:
            self.close()
        return status, body

    def _receive(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(_RECEIVE)
        if not chunk:
            raise EOFError("the server closed the connection")
        return chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
