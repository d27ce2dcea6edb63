"""Type stub for the compiled twin of gateway/http/request.py."""

from gateway.http.request import Request as _Twin

class Request(_Twin): ...
