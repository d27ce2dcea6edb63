"""The location and server routers in use: compiled if built, else the twin."""

from gateway._select import load_fast

_fast = load_fast("router")

if _fast is not None:
    from _fastpath.router import LocationRouter, ServerRouter  # noqa: F401
else:
    from gateway.routing.router_py import LocationRouter, ServerRouter  # noqa: F401

from gateway.routing.router_py import compile_regex, normalize_host  # noqa: F401,E402

IMPLEMENTATION = "cython" if _fast is not None else "python"

__all__ = ["LocationRouter", "ServerRouter", "compile_regex", "normalize_host", "IMPLEMENTATION"]
