"""Fuzz target: configuration text through load_config(): a Config, or a ConfigError with file:line."""

import os
import shutil
import tempfile

import atheris

import harness

with atheris.instrument_imports():
    from gateway.config import DEFAULT_CONFIG, DEFAULT_DIR, load_config
    from gateway.errors import ConfigError

SEEDS = [open(path, "rb").read() for path in (
    DEFAULT_CONFIG, os.path.join(harness.ROOT, "examples", "front-proxy", "gateway.conf"),
    os.path.join(harness.ROOT, "tests", "config", "samples", "many_directives.conf"))]
# Whole-configuration errors nginx reports without a place (see tests/config/test_config_properties.py).
WITHOUT_PLACE = {'no "events" section in configuration'}

PREFIX = tempfile.mkdtemp(prefix="fuzz-config-")
shutil.copy(os.path.join(DEFAULT_DIR, "mime.types"), PREFIX)
os.mkdir(os.path.join(PREFIX, "html"))
PATH = os.path.join(PREFIX, "main.conf")


def test_one_input(data: bytes):
    with open(PATH, "wb") as fh:
        fh.write(data)
    try:
        load_config(PATH, PREFIX)
    except ConfigError as exc:
        if exc.message not in WITHOUT_PLACE:
            assert exc.file is not None and exc.line is not None, str(exc)


if __name__ == "__main__":
    try:
        harness.run(test_one_input, SEEDS)
    finally:
        shutil.rmtree(PREFIX)
