"""Fixtures for the HTTP tests: every parser test runs on both implementations."""

import importlib

import pytest

IMPLEMENTATIONS = {"python": "gateway.http.parser_py", "cython": "_fastpath.httpparse"}


def load_parser(kind: str):
    """The parser module of one implementation; fails loudly if the extension is not built."""
    try:
        return importlib.import_module(IMPLEMENTATIONS[kind])
    except ImportError as exc:
        pytest.fail(f"{IMPLEMENTATIONS[kind]} is not built ({exc}): run `make extensions`")


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def parser(request):
    """gateway.http.parser_py or _fastpath.httpparse."""
    return load_parser(request.param)


@pytest.fixture
def both_parsers():
    """(python, cython) parser modules, for comparing them on the same input."""
    return load_parser("python"), load_parser("cython")
