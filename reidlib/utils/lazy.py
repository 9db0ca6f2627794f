"""PEP 562 lazy exports: a package lists ``name -> submodule`` and loads the submodule on first use,
so ``import reidlib.<pkg>`` stays cheap (no torch import for the CLI's ``--help``)."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable, Callable]:
    def __getattr__(name: str):
        if name in exports:
            module = importlib.import_module(f"{package}.{exports[name]}")
            return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__
