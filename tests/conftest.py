"""Fixtures shared by every test folder: real processes on free loopback ports."""

import faulthandler
import os
import re
import sys

import pytest
from hypothesis import HealthCheck, settings

from tests.support.processes import EchoBackend, Gateway, Nginx, free_port

# Property tests (test_*_properties.py) stay within a few seconds each in the
# suite; `pytest --hypothesis-profile=fuzz` runs them a hundred times longer.
settings.register_profile("suite", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=10000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # A crash dumps the crashing thread only: with client threads running, the dump of every
    # thread is longer than the part of CI's log that is kept, and the crashing thread was cut.
    faulthandler.enable(file=os.dup(sys.__stderr__.fileno()), all_threads=False)


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def backend():
    server = EchoBackend("b1")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def start_backend():
    started = []

    def start(name="backend"):
        server = EchoBackend(name)
        started.append(server)
        return server
    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def start_gateway(tmp_path):
    """start_gateway(config_text, port) -> Gateway; every one is stopped at teardown."""
    started = []

    def start(config: str, port: int, env=None, name="gw"):
        folder = tmp_path / f"{name}{len(started)}"
        folder.mkdir()
        gateway = Gateway(folder, config, port, env)
        started.append(gateway)
        return gateway
    try:
        yield start
    finally:
        for gateway in started:
            gateway.stop()
    # A worker that crashed was replaced by the master and the test may still pass: fail it here.
    crashes = [line for gateway in started for line in gateway.errors().splitlines()
               if re.search(r"exited on signal (4|6|7|8|11)$", line)]
    assert not crashes, crashes


@pytest.fixture
def start_nginx(tmp_path):
    started = []

    def start(config: str, port: int):
        folder = tmp_path / f"nginx{len(started)}"
        folder.mkdir()
        server = Nginx(folder, config, port)
        started.append(server)
        return server
    try:
        yield start
    finally:
        for server in started:
            server.stop()
