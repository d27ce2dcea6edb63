"""Fixtures for the routing tests: every router test runs on both implementations."""

import importlib

import pytest

IMPLEMENTATIONS = {"python": "gateway.routing.router_py", "cython": "_fastpath.router"}


def load_router(kind: str):
    """The router module of one implementation; fails loudly if the extension is not built."""
    try:
        return importlib.import_module(IMPLEMENTATIONS[kind])
    except ImportError as exc:
        pytest.fail(f"{IMPLEMENTATIONS[kind]} is not built ({exc}): run `make extensions`")


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def router(request):
    """gateway.routing.router_py or _fastpath.router."""
    return load_router(request.param)


@pytest.fixture
def both_routers():
    """(python, cython) router modules, for comparing them on the same input."""
    return load_router("python"), load_router("cython")
