"""Name processes ``gateway: master`` / ``gateway: worker`` so ps and /proc tell them apart."""

import ctypes

_PR_SET_NAME = 15
_libc = None


def set_process_name(name: str) -> None:
    """Set the kernel's short name of this process (at most 15 bytes are kept)."""
    global _libc
    try:
        if _libc is None:
            # The symbols already loaded, libc's among them: find_library would run ldconfig -p.
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    except (OSError, AttributeError):
        pass     # cosmetic only
