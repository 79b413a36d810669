"""The README's Python example runs as written (against the test namespace)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from ledger import Settings
from projections import run_projection
from projections.postgres import migrate

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    [example] = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    for field in ("redis_url", "database_url", "namespace", "partitions", "allow_volatile"):
        monkeypatch.setenv(f"MEMLEDGER_{field.upper()}", str(getattr(settings, field)))
    migrate.upgrade(settings)
    stop = threading.Event()
    projector = threading.Thread(target=run_projection, args=(settings, "memories"), kwargs={"stop": stop})
    projector.start()
    scope: dict[str, object] = {}
    try:
        exec(compile(example, str(README), "exec"), scope)  # noqa: S102 - the README's own code
    finally:
        stop.set()
        projector.join()
    rows = scope["rows"]
    assert [r["content"] for r in rows] == ["Dana prefers morning meetings"]  # type: ignore[attr-defined]
    scope["store"].close()  # type: ignore[attr-defined]
