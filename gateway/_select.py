"""Pick a compiled ``_fastpath`` module or fall back to its pure-Python twin."""

from __future__ import annotations

import importlib
import os
import warnings

_warned = False


def extensions_disabled() -> bool:
    """True when ``GATEWAY_NO_EXTENSIONS=1`` forces the pure-Python twins."""
    return os.environ.get("GATEWAY_NO_EXTENSIONS") == "1"


def load_fast(name: str):
    """The compiled module ``_fastpath.<name>``, or None to use the pure-Python twin."""
    global _warned
    if extensions_disabled():
        return None
    try:
        return importlib.import_module(f"_fastpath.{name}")
    except ImportError as exc:
        # One warning per process is enough to tell an operator why it is slow.
        if not _warned:
            _warned = True
            warnings.warn(
                f"_fastpath.{name} is not built ({exc}); using the pure-Python "
                "twins, which are slower: build them with `make extensions`",
                RuntimeWarning, stacklevel=2)
        return None
