"""Fixtures for the upstream tests: a real nginx started by pid and stopped in teardown."""

import pytest

from .nginx_harness import Nginx


@pytest.fixture
def run_nginx(tmp_path):
    """Start nginx in front of the given pools; every instance is stopped at teardown."""
    started = []

    def start(pools):
        prefix = tmp_path / f"nginx{len(started)}"
        prefix.mkdir()
        nginx = Nginx(str(prefix), pools)
        started.append(nginx)
        nginx.start()
        return nginx

    try:
        yield start
    finally:
        for nginx in started:
            nginx.stop()
