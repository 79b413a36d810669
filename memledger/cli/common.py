"""Shared CLI plumbing: settings, output helpers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
import typer
from rich.console import Console

from ledger import Settings


@dataclass
class _State:
    debug: bool = False


state = _State()
console = Console()


@cache
def settings() -> Settings:
    return Settings()


def print_json(value: Any) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS).decode())
