"""Fixtures that build the images once and boot real QEMU workers, killed by pid in teardown."""

import subprocess
from pathlib import Path

import pytest

from tests.unikernel.harness import Worker

UNIKERNELS = Path(__file__).resolve().parents[2] / "unikernels"


@pytest.fixture(scope="session")
def images():
    """Build every image (make is incremental); fail with make's output if the build breaks."""
    done = subprocess.run(["make", "-s", "-C", str(UNIKERNELS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return UNIKERNELS / "build"


@pytest.fixture
def boot(images, tmp_path):
    """boot(service, **kw) -> a started Worker that has answered a ping."""
    workers = []

    def _boot(service, **kw):
        worker = Worker(service, str(tmp_path), **kw)
        workers.append(worker)
        worker.start()
        worker.wait_ready()
        return worker

    try:
        yield _boot
    finally:
        for worker in workers:
            worker.stop()
