"""limit_rate, limit_rate_after, $limit_rate and X-Accel-Limit-Rate side by side with real nginx.

Downloads are timed: 300k at 100k/s after 50k take about two seconds with nginx's write
filter (one second's worth at once, then a second per 100k), so a gateway that does not
pace answers in a fraction of that and fails.
"""

import time

import pytest

from tests.http.test_nginx_parity import fetch
from tests.http.test_nginx_parity_maps import running_pair

pytestmark = pytest.mark.nginx

SIZE = 300 * 1024
SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    default_type text/plain;
    log_format rate "$uri $limit_rate";
    access_log {dir}/rate.log rate;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        root {dir}/html;
        limit_rate_after 50k;

        location /paced/ {{ proxy_pass http://app; limit_rate 100k; }}
        location /accel/ {{ proxy_pass http://app; }}
        location /ignored/ {{ proxy_pass http://app; proxy_ignore_headers X-Accel-Limit-Rate; }}
        location /unbuffered/ {{ proxy_pass http://app; limit_rate 100k; proxy_buffering off; }}
        location /setvar/ {{ set $limit_rate 100k; proxy_pass http://app; }}
        location /byvar/ {{ set $r 100k; limit_rate $r; proxy_pass http://app; }}
        location /files/ {{ limit_rate 100k; }}
        location /slowread/ {{ proxy_pass http://app; limit_rate 100k; proxy_read_timeout 1s; }}
        location /fast/ {{ }}
    }}
}}
"""


def _files(folder):
    for name in ("files", "fast"):
        (folder / "html" / name).mkdir(parents=True)
        (folder / "html" / name / "big.txt").write_bytes(b"z" * SIZE)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "rate", _files) as both:
        yield both


def _timed(port, target):
    # nginx counts whole seconds since the request's second began: a request started late in
    # a second may send a second's worth more at once. Starting early in a second, the
    # download below takes 2 s on either side.
    while time.time() % 1 > 0.2:
        time.sleep(0.02)
    started = time.monotonic()
    status, headers, body = fetch(port, "GET", target, {}, None)
    return time.monotonic() - started, status, headers, body


BIG = f"big?n={SIZE}"
ACCEL = f"text?n={SIZE}&type=text/plain&X-Accel-Limit-Rate=102400"


@pytest.mark.parametrize("target", [
    f"/paced/{BIG}", f"/accel/{ACCEL}", f"/setvar/{BIG}", f"/byvar/{BIG}", "/files/big.txt"])
def test_paced_like_nginx(pair, target):
    nginx, gateway = pair
    want = _timed(nginx.port, target)
    got = _timed(gateway.port, target)
    assert got[1] == want[1] == 200
    assert len(got[3]) == len(want[3]) == SIZE and got[3] == want[3]
    assert "x-accel-limit-rate" not in got[2]
    # nginx: 150k at once, then 100k a second: about 2 s.
    assert want[0] >= 1.5, want[0]
    assert got[0] >= 1.5, got[0]
    assert abs(got[0] - want[0]) < 0.5, (got[0], want[0])


@pytest.mark.parametrize("target", [
    f"/ignored/{ACCEL}", f"/unbuffered/{BIG}", "/fast/big.txt"])
def test_not_paced_like_nginx(pair, target):
    for server in pair:
        elapsed, status, _, body = _timed(server.port, target)
        assert status == 200 and len(body) == SIZE
        assert elapsed < 1.0, (server, target, elapsed)


def test_limit_rate_variable_in_the_log(pair):
    targets = ["/paced/big?n=10", "/accel/text?n=10&X-Accel-Limit-Rate=5000",
               "/ignored/text?n=10&X-Accel-Limit-Rate=5000", "/unbuffered/big?n=10",
               "/setvar/big?n=10", "/byvar/big?n=10", "/fast/big.txt"]
    logs = []
    for server in pair:
        log = server.dir / "rate.log"

        def lines():
            return (log.read_text() if log.exists() else "").splitlines()
        # Earlier tests log to the same file, some lines still on their way: wait until these
        # requests' lines are in and the file stops growing; they are the last ones.
        before = len(lines())
        for target in targets:
            assert fetch(server.port, "GET", target, {}, None)[0] == 200
        deadline = time.monotonic() + 5
        seen, still_since = len(lines()), time.monotonic()
        while time.monotonic() < deadline:
            count = len(lines())
            if count != seen:
                seen, still_since = count, time.monotonic()
            elif count >= before + len(targets) and time.monotonic() - still_since > 0.5:
                break
            time.sleep(0.05)
        logs.append(lines()[-len(targets):])
    assert logs[1] == logs[0], logs
    assert logs[0][0].endswith(" 102400") and logs[0][1].endswith(" 5000")


def test_pace_longer_than_the_read_timeout(pair):
    """The pace holds the upstream unread for longer than proxy_read_timeout: nginx reads it
    into its buffers meanwhile, and the whole body arrives on both sides."""
    target = f"/slowread/big?n={2 * SIZE}"
    for server in pair:
        elapsed, status, _, body = _timed(server.port, target)
        assert status == 200 and len(body) == 2 * SIZE, server
        assert elapsed >= 3.5, (server, elapsed)
