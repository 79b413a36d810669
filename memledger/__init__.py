"""The application: one API object (`App`, memledger/app.py) that every surface calls, and the
surfaces themselves: the `memledger` console command (cli/), the demo and the benchmark."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.lazy import lazy_names

if TYPE_CHECKING:
    from .app import App, NotPermitted

__all__ = ["App", "NotPermitted"]

# The App's module imports the drivers: resolved on first use (PEP 562), so importing a
# sibling (memledger.demo, memledger.servers) stays cheap.
_LAZY = {"App": ".app", "NotPermitted": ".app"}

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise type any unknown name as Any
    __getattr__ = lazy_names(__name__, _LAZY, globals())
