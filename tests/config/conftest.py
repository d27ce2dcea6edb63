"""Helpers for config tests: write a config into a temporary prefix and load it."""

from __future__ import annotations

import pathlib

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

HEADER = "pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"


class ConfHelper:
    """Writes config files under one temporary prefix."""

    def __init__(self, root: pathlib.Path):
        self.root = root

    def write(self, name: str, text: str) -> str:
        """Write ``text`` to ``root/name``; return its absolute path."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)

    def main(self, body: str, name: str = "main.conf") -> str:
        """A main file: pid, error_log and events first (line 1-3), then ``body``."""
        return self.write(name, HEADER.format(tmp=self.root) + body)

    def load(self, body: str, **kw):
        """Load ``body`` as the http part of a complete main file."""
        return load_config(self.main(body), str(self.root), **kw)

    def error(self, body: str, **kw) -> str:
        """Load ``body`` expecting a ConfigError; return its full text."""
        with pytest.raises(ConfigError) as info:
            self.load(body, **kw)
        return str(info.value)


@pytest.fixture
def conf(tmp_path) -> ConfHelper:
    """A ConfHelper rooted in this test's temporary directory."""
    return ConfHelper(tmp_path)
