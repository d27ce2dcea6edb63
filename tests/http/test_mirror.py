"""The per-worker bound on mirror subrequests (gateway/http/mirror.py), without sockets."""

from types import SimpleNamespace

from gateway.http import mirror
from gateway.http.request import Request


def test_mirrors_beyond_the_bound_are_dropped_and_logged(monkeypatch):
    lines = []
    monkeypatch.setattr(mirror.log, "warn", lines.append)
    clock = iter([10.0, 10.5, 10.9])
    app = SimpleNamespace(clock=lambda: next(clock), loop=None)
    mirrors = mirror.Mirrors(app)
    mirrors.running = {object() for _ in range(mirror.IN_FLIGHT)}
    request = Request("POST", "/a?b=1", "/a", "b=1", 11, [])
    request.connection_id, request.remote_addr, request.server_name = 7, "127.0.0.1", "x"
    for _ in range(3):
        mirrors.launch(request, "/mirror", ())
    assert mirrors.dropped == 3 and len(mirrors.running) == mirror.IN_FLIGHT
    # One line a second at most.
    assert lines == [f'*7 mirror "/mirror" dropped: {mirror.IN_FLIGHT} mirror subrequests in '
                     'flight, client: 127.0.0.1, server: x, request: "POST /a?b=1 HTTP/1.1"']
