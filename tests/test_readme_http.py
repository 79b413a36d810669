"""The README's "HTTP in one minute" block, run as a newcomer would: `memledger serve` and
`memledger up` in the background, a key from `memledger keys create`, then the curl commands,
unchanged but for the port (the test's server listens on a free one)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ledger import Settings

from test_durability import free_port

README = Path(__file__).resolve().parent.parent / "README.md"


def _block(heading: str) -> list[str]:
    """The logical lines (continuations joined) of the first bash block under `heading`."""
    text = README.read_text().split(f"## {heading}\n", 1)[1]
    body = re.search(r"```bash\n(.*?)```", text, re.S)
    assert body is not None, f"no bash block under {heading!r}"
    return [line for line in body.group(1).replace("\\\n", " ").splitlines() if line.strip()]


def _env(settings: Settings, port: int) -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "MEMLEDGER_REDIS_URL": str(settings.redis_url), "MEMLEDGER_DATABASE_URL": str(settings.database_url),
            "MEMLEDGER_NAMESPACE": settings.namespace, "MEMLEDGER_PARTITIONS": str(settings.partitions),
            "MEMLEDGER_ALLOW_VOLATILE": "1", "MEMLEDGER_HTTP_PORT": str(port)}


def _wait_healthy(port: int, servers: list[subprocess.Popen[bytes]], logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while True:
        alive = all(s.poll() is None for s in servers) and time.monotonic() < deadline
        assert alive, "serve did not come up: " + " | ".join(log.read_text()[-2000:] for log in logs)
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)


def test_the_http_quick_start_runs_as_written(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    lines = [line.replace("localhost:8080", f"localhost:{port}") for line in _block("HTTP in one minute")]
    detached = [line.split("#")[0].strip() for line in lines]
    background = [command.removesuffix("&") for command in detached if command.endswith("&")]
    script = "\n".join(line for line, command in zip(lines, detached) if not command.endswith("&"))
    assert background == ["memledger serve ", "memledger up "], background
    env = _env(settings, port)
    logs = [tmp_path / f"background-{n}.log" for n in range(len(background))]
    outputs = [log.open("wb") for log in logs]
    servers = [subprocess.Popen(["bash", "-c", f"exec {command}"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
               for command, out in zip(background, outputs)]
    try:
        _wait_healthy(port, servers, logs)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                              timeout=120, cwd=tmp_path)
    finally:
        for server in servers:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGTERM)
        for server, out in zip(servers, outputs):
            server.wait(timeout=30)
            out.close()
    assert done.returncode == 0, done.stderr
    headers = (tmp_path / "headers.txt").read_text().lower()
    assert headers.startswith("http/1.1 201") and "x-consistency-token: " in headers
    assert re.search(r'"content":"Dana prefers morning meetings".*"next_cursor"', done.stdout), done.stdout
