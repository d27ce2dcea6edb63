"""Configuration loading: nginx-style text in, typed ``Config`` out."""

from __future__ import annotations

import os

from gateway.config.builder import Builder
from gateway.config.model import Config
from gateway.config.parser import parse
from gateway.errors import ConfigError

DEFAULT_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "default")
DEFAULT_CONFIG = os.path.join(DEFAULT_DIR, "gateway.conf")

__all__ = ["Config", "DEFAULT_CONFIG", "DEFAULT_DIR", "load_config"]


def load_config(path: str | None, prefix: str, globals_text: str | None = None) -> Config:
    """Load and validate a configuration; raise ConfigError in nginx's wording.

    ``path`` None loads the embedded default, whose relative ``root`` paths
    resolve against its own folder so that its welcome page is always found.
    """
    prefix = os.path.abspath(prefix)
    if path is None:
        path, root_prefix = DEFAULT_CONFIG, DEFAULT_DIR
    else:
        path = os.path.join(prefix, path) if not os.path.isabs(path) else path
        root_prefix = prefix
    try:
        parsed = parse(path, globals_text)
        return Builder(parsed, path, prefix, root_prefix).build()
    except RecursionError:
        raise ConfigError(f"blocks nested too deeply in {path}") from None
