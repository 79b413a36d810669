"""Package attributes resolved on first use (PEP 562), so importing a package's pure
modules loads no driver: the adapter behind a name is imported only when it is used."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, names: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], object]:
    """A module `__getattr__` for `package`: `names` maps a public name to the (relative)
    module defining it; the value is cached in `namespace` (the package's globals())."""

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(names[name], package), name)
        namespace[name] = value
        return value

    return __getattr__
