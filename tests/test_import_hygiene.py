"""Import hygiene: models, `decide()` and folds load no driver when imported.

Each module is imported in a fresh interpreter, because this test process (and its
conftest) has already loaded every driver.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DRIVERS = ("redis", "hiredis", "psycopg", "psycopg_pool", "sqlalchemy", "alembic", "dramatiq")

PURE_MODULES = ("ledger.events", "ledger.codec", "ledger.upcasting", "commands.models", "commands.decide",
                "ledger.storable", "commands.wire", "projections.fold", "ledger.eventlog", "commands.bus")

# The public names of each package, imported the way callers import them (lazily resolved).
PUBLIC = {
    "ledger": ("Settings", "open_log", "Receipt", "RedisEventLog", "RecordedEvent", "EventLog", "Append"),
    "commands": ("open_bus", "CommandBus", "StoreMemory", "decide", "Unauthorized", "parse"),
    "projections": ("PROJECTIONS", "run_projection", "MemoryQuery", "MemoryStore", "open_memory_store",
                    "Projector", "open_projection"),
}


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _loaded_drivers(module: str) -> list[str]:
    code = (f"import sys, json, importlib; importlib.import_module({module!r}); "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {list(DRIVERS)!r})))")
    return list(json.loads(_run(code)))


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_module_loads_no_driver(module: str) -> None:
    loaded = _loaded_drivers(module)

    assert loaded == [], f"importing {module} loaded drivers {sorted({m.split('.')[0] for m in loaded})}"


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_public_name_still_imports(package: str) -> None:
    names = ", ".join(PUBLIC[package])
    code = (f"import {package}; from {package} import {names}; "
            f"missing = [n for n in {package}.__all__ if getattr({package}, n, None) is None]; "
            f"assert not missing, missing; print('ok')")

    assert _run(code).strip() == "ok"


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_unknown_name_is_an_attribute_error(package: str) -> None:
    code = (f"import {package}\ntry:\n    {package}.no_such_name\nexcept AttributeError as e:\n    print(e)")

    assert "no_such_name" in _run(code)
