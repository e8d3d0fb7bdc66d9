"""A package's front door: public names imported from their modules on first use (PEP 562)."""

from __future__ import annotations

import importlib
import sys


def lazy_names(package: str, homes: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``, whose public name ``n`` lives in module
    ``package + "." + homes[n]`` and is imported the first time it is asked for."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
