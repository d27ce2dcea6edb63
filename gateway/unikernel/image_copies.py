"""A worker's private copies of its pools' images (see UnikernelService._private_copy), and their
removal by the master when the worker died without removing them itself (killed by a signal)."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile

PREFIX = "gateway-images-"


def make_dir() -> str:
    """A new folder for this process's copies, named after its pid so the master can find it."""
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")


def remove_of(pid: int) -> None:
    """Remove the folders worker ``pid`` left behind."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{PREFIX}{pid}-*")):
        shutil.rmtree(path, ignore_errors=True)
