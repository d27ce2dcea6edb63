"""The client protocol in use: the compiled proxy path if built, else the pure-Python twins."""

from gateway._select import load_fast

_fast = load_fast("proxyproto")

if _fast is not None:
    from _fastpath.proxyproto import ClientConnection, TlsClientConnection  # noqa: F401
    from _fastpath.proxyproto import record_heads  # noqa: F401
else:
    from gateway.http.connection import ClientConnection, TlsClientConnection  # noqa: F401

IMPLEMENTATION = "cython" if _fast is not None else "python"

__all__ = ["ClientConnection", "TlsClientConnection", "IMPLEMENTATION"]
