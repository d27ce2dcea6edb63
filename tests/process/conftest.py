"""Fixtures: a gateway in a temporary prefix, a slow upstream; every process is stopped by pid."""

import os
import subprocess
import sys

import pytest

from tests.process.harness import WAIT, Gateway, free_port


@pytest.fixture
def gateway(tmp_path):
    """A Gateway in a fresh prefix whose processes are all stopped at teardown."""
    gw = Gateway(str(tmp_path))
    try:
        yield gw
    finally:
        gw.cleanup()


@pytest.fixture
def slow_upstream(tmp_path):
    """A real aiohttp server process: ``/slow`` answers after 2 s; yields (port, proc)."""
    port = free_port()
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slow_upstream.py")
    proc = subprocess.Popen([sys.executable, script, str(port)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield port, proc
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)
        proc.stdout.close()
