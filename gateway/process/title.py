"""Name processes ``gateway: master`` / ``gateway: worker`` so ps and /proc tell them apart."""

import ctypes
import ctypes.util

_PR_SET_NAME = 15
_libc = None


def set_process_name(name: str) -> None:
    """Set the kernel's short name of this process (at most 15 bytes are kept)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass     # cosmetic only
