"""One request's parts worked on by several unikernel pools: auth and cache before the upstream.

Real gateway process, real QEMU auth and kv workers, a real upstream (tests/support/echo_backend.py)
whose request log shows what reached it.
"""

import concurrent.futures
import hashlib
import hmac
import http.client
import os
import signal
import socket
import threading
import time

import orjson
import pytest

from gateway.upstream.ring import Ring
from tests.support.processes import EchoBackend
from tests.unikernel.test_gateway_services import (  # noqa: F401  (uk_gateway is a fixture)
    AUTH_KEY, instances, jwt, request, signal_qemu, uk_gateway, wait_for)

pytestmark = pytest.mark.qemu

PUBLIC = "/headers?Cache-Control=public,max-age=60"
HOOK_KEY = b"webhook secret"


def compose_config(port, upstream, transport="socketpair", auth="", cache="", pools=""):
    fast = "setting ping_interval 100ms; setting hang_timeout 5s; setting backoff_min 20ms;"
    return f"""
worker_processes 1;
error_log error.log info;
pid gateway.pid;
events {{ worker_connections 256; }}
http {{
    access_log access.log cachelog;
    log_format cachelog '$request_uri $unikernel_cache_status $status $request_time';
    unikernel auth {{ image auth; transport {transport}; setting key {AUTH_KEY.hex()}; {fast} }}
    unikernel kv {{ image kv; instances 2 2; transport {transport}; balance hash $request_uri consistent; {fast} }}
    unikernel hooks {{ image webhook; transport {transport}; setting key {HOOK_KEY.hex()}; {fast} }}
    {pools}
    server {{
        listen 127.0.0.1:{port};
        location /api/ {{
            unikernel_auth auth timeout=2s {auth} set_header X-User=sub X-Role=role;
            unikernel_cache kv ttl=30s timeout=10s {cache};
            proxy_pass http://{upstream};
        }}
        location /cache/ {{
            unikernel_cache kv timeout=2s {cache};
            proxy_pass http://{upstream};
        }}
        location /hooks/ {{
            unikernel_body hooks;
            proxy_pass http://{upstream};
        }}
        location /hooks/big {{
            client_max_body_size 4m;
            unikernel_body hooks;
            proxy_pass http://{upstream};
        }}
        location /signed/ {{
            unikernel_auth auth;
            unikernel_body hooks signature=$http_x_signature;
            proxy_pass http://{upstream};
        }}
        location /private/ {{
            unikernel_auth auth;
            proxy_pass http://{upstream};
        }}
    }}
}}
"""


@pytest.fixture
def upstream(tmp_path):
    log = tmp_path / "upstream.log"
    log.touch()
    backend = EchoBackend("app", log=log)
    backend.log = log
    yield backend
    backend.stop()


def seen(upstream):
    """The requests the upstream received, as "METHOD TARGET" lines."""
    return upstream.log.read_text().splitlines()


def bearer(**claims):
    now = int(time.time())
    return {"Authorization": "Bearer " + jwt({"sub": "alice", "role": "admin", "exp": now + 600, **claims})}


def upstream_headers(body):
    return dict(orjson.loads(body)["headers"])


def pid_of(gateway, pool):
    (inst,) = [i for i in instances(gateway, pool) if i["state"] == "ready"][:1]
    return inst["pid"]


@pytest.mark.parametrize("transport", ["tap", "socketpair"])
def test_auth_gates_the_upstream(uk_gateway, upstream, transport):
    gw = uk_gateway(lambda port: compose_config(port, upstream.address, transport))
    port = gw.port
    now = int(time.time())
    refused = {
        "missing": ({}, 'Bearer'),
        "garbage": ({"Authorization": "Bearer not.a.token"}, 'Bearer error="invalid_token"'),
        "wrong key": ({"Authorization": "Bearer " + jwt({"sub": "x"}, key=b"other key")},
                      'Bearer error="invalid_token"'),
        "expired": ({"Authorization": "Bearer " + jwt({"sub": "x", "exp": now - 5})},
                    'Bearer error="invalid_token"'),
        "not yet valid": ({"Authorization": "Bearer " + jwt({"sub": "x", "nbf": now + 600})},
                          'Bearer error="invalid_token"'),
        "alg none": ({"Authorization": "Bearer " + jwt({"sub": "x"}, alg="none")},
                     'Bearer error="invalid_token"'),
    }
    for why, (headers, challenge) in refused.items():
        code, got, _ = request(port, "GET", "/private/x", headers=headers)
        assert (code, got.get("www-authenticate")) == (401, challenge), why
        # A refused upload is refused before its body is asked for, and never reaches the upstream.
        code, _, _ = request(port, "POST", "/private/upload", body=b"b" * 5000, headers=headers)
        assert code == 401, why
    assert seen(upstream) == []

    # A good token: the request goes on, with the verified claims as headers and the client's own
    # copies of those headers dropped.
    headers = {**bearer(), "X-User": "mallory", "X-Role": "root"}
    code, _, body = request(port, "POST", "/api/submit", body=b"payload", headers=headers)
    assert code == 200
    echoed = upstream_headers(body)
    assert (echoed["x-user"], echoed["x-role"]) == ("alice", "admin")
    assert [k for k, _ in orjson.loads(body)["headers"]].count("x-user") == 1
    assert orjson.loads(body)["body_length"] == 7
    assert seen(upstream) == ["POST /api/submit"]


def test_cache_hit_miss_and_what_is_not_stored(uk_gateway, upstream):
    gw = uk_gateway(lambda port: compose_config(port, upstream.address))
    port = gw.port

    def get(path, method="GET", headers=None):
        code, got, body = request(port, method, path, headers=headers)
        return code, got.get("x-cache"), body

    # Stored, then served from the kv guest without the upstream.
    first = get("/cache" + PUBLIC)
    second = get("/cache" + PUBLIC)
    assert (first[0], first[1]) == (200, "MISS")
    assert second == (200, "HIT", first[2])
    code, got, _ = request(port, "GET", "/cache" + PUBLIC)
    assert got["cache-control"] == "public,max-age=60" and int(got["age"]) >= 0
    # HEAD is answered from the stored GET.
    code, got, body = request(port, "HEAD", "/cache" + PUBLIC)
    assert (code, got["x-cache"], body, got["content-length"]) == (200, "HIT", b"", str(len(first[2])))
    assert seen(upstream) == ["GET /cache" + PUBLIC]

    # Not stored: no-store, private, no-cache, Set-Cookie, Vary: *, an uncacheable status.
    for path in ("/cache/headers?Cache-Control=no-store", "/cache/headers?Cache-Control=private",
                 "/cache/headers?Cache-Control=no-cache", "/cache/headers?Set-Cookie=a=1",
                 "/cache/headers?Vary=*", "/cache/status/500/x"):
        assert get(path)[1] == "MISS", path
        assert get(path)[1] == "MISS", path
        assert seen(upstream).count("GET " + path) == 2, path
    # A default lifetime (ttl=) for a cacheable response that names none.
    assert [get("/cache/plain")[1] for _ in range(2)] == ["MISS", "HIT"]

    # A response larger than one frame is stored fragmented and read back whole.
    big = "/cache/big?n=300000"
    first, second = get(big), get(big)
    assert (first[1], second[1], len(second[2]), second[2] == first[2]) == ("MISS", "HIT", 300000, True)
    # Over max_size (512k by default): passed through, not stored.
    assert [get("/cache/big?n=600000")[1] for _ in range(2)] == ["MISS", "MISS"]

    # Methods outside methods= bypass the cache, and are not answered from it.
    code, xc, _ = get("/cache" + PUBLIC, method="POST")
    assert (code, xc) == (200, "BYPASS")

    # Vary: each variant stands for the request values it was stored with.
    vary = "/cache/headers?Vary=X-Lang&Cache-Control=max-age=60"
    assert get(vary, headers={"X-Lang": "en"})[1] == "MISS"
    assert get(vary, headers={"X-Lang": "en"})[1] == "HIT"
    assert get(vary, headers={"X-Lang": "fr"})[1] == "MISS"

    # Expiry: max-age=1 lives one second in the guest.
    short = "/cache/headers?Cache-Control=max-age=1"
    assert [get(short)[1], get(short)[1]] == ["MISS", "HIT"]
    time.sleep(2.2)
    assert get(short)[1] == "MISS"

    # The access log has $unikernel_cache_status.
    log = [line.rsplit(" ", 1) for line in (gw.dir / "access.log").read_text().splitlines()]
    assert [f"/cache{PUBLIC} MISS 200", f"/cache{PUBLIC} HIT 200"] == [line for line, _ in log][:2]
    assert all(0 <= float(seconds) < 30 for _, seconds in log)


def test_authorized_requests_are_stored_only_when_public(uk_gateway, upstream):
    gw = uk_gateway(lambda port: compose_config(port, upstream.address))
    port = gw.port
    # RFC 9111 3.5: a response to a request with Authorization is shared only when it says so.
    for path, expected in (("/api/headers?Cache-Control=max-age=60", ["MISS", "MISS"]),
                           ("/api" + PUBLIC, ["MISS", "HIT"])):
        got = [request(port, "GET", path, headers=bearer())[1].get("x-cache") for _ in range(2)]
        assert got == expected, path
    # A hit still needs a good credential.
    assert request(port, "GET", "/api" + PUBLIC)[0] == 401
    assert seen(upstream).count("GET /api" + PUBLIC) == 1


def test_fifty_concurrent_misses_make_one_upstream_fetch(uk_gateway, upstream):
    gw = uk_gateway(lambda port: compose_config(port, upstream.address))
    path = "/cache/slow/headers?ms=400&Cache-Control=public,max-age=60"
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: request(gw.port, "GET", path), range(50)))
    assert {r[0] for r in results} == {200}
    assert len({r[2] for r in results}) == 1
    assert sorted(r[1]["x-cache"] for r in results).count("MISS") == 1
    assert seen(upstream).count("GET " + path) == 1


def test_lookup_runs_while_auth_is_still_out(uk_gateway, upstream):
    """The kv lookup is sent with the credential, not after it: with the auth guest stopped, the
    lookup is answered; then with the kv guest stopped and auth running again, the request completes
    from what the lookup returned. Sent one after the other, it could not finish while kv is stopped."""
    gw = uk_gateway(lambda port: compose_config(port, upstream.address))
    port = gw.port
    assert request(port, "GET", "/api" + PUBLIC, headers=bearer())[1]["x-cache"] == "MISS"
    auth_pid = pid_of(gw, "auth")
    kv_pids = [i["pid"] for i in instances(gw, "kv")]
    result = {}

    def client():
        result["response"] = request(port, "GET", "/api" + PUBLIC, headers=bearer())
        result["at"] = time.monotonic()

    signal_qemu(auth_pid, signal.SIGSTOP)
    try:
        thread = threading.Thread(target=client)
        thread.start()
        time.sleep(0.6)
        assert "response" not in result           # the credential is still out
        for pid in kv_pids:
            signal_qemu(pid, signal.SIGSTOP)
        stopped_kv_at = time.monotonic()
        signal_qemu(auth_pid, signal.SIGCONT)
        thread.join(5)
        assert result["response"][0] == 200 and result["response"][1]["x-cache"] == "HIT"
        assert result["at"] - stopped_kv_at < 3
    finally:
        signal_qemu(auth_pid, signal.SIGCONT)
        for pid in kv_pids:
            signal_qemu(pid, signal.SIGCONT)
    assert seen(upstream).count("GET /api" + PUBLIC) == 1


def test_dead_or_hung_pools_degrade_as_configured(uk_gateway, upstream):
    gw = uk_gateway(lambda port: compose_config(port, upstream.address, auth="", cache=""))
    port = gw.port
    assert request(port, "GET", "/cache" + PUBLIC)[1]["x-cache"] == "MISS"
    assert request(port, "GET", "/cache" + PUBLIC)[1]["x-cache"] == "HIT"

    # kv hung: the lookup times out (timeout=2s) and the request bypasses to the upstream.
    kv_pids = [i["pid"] for i in instances(gw, "kv")]
    for pid in kv_pids:
        signal_qemu(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        code, got, _ = request(port, "GET", "/cache" + PUBLIC)
        assert (code, got["x-cache"]) == (200, "BYPASS")
        assert time.monotonic() - started < 4
    finally:
        for pid in kv_pids:
            signal_qemu(pid, signal.SIGCONT)
    wait_for(lambda: request(port, "GET", "/cache" + PUBLIC)[1]["x-cache"] == "HIT", timeout=10,
             what="cache hits again")

    # auth hung: fail closed within its timeout (2s), then serves again once it answers.
    auth_pid = pid_of(gw, "auth")
    signal_qemu(auth_pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert request(port, "GET", "/api/x", headers=bearer())[0] == 503
        assert time.monotonic() - started < 4
    finally:
        signal_qemu(auth_pid, signal.SIGCONT)
    wait_for(lambda: request(port, "GET", "/api/x", headers=bearer())[0] == 200, timeout=10,
             what="auth answering again")

    # auth killed: the supervisor restarts it; no request hangs meanwhile, and it recovers.
    signal_qemu(pid_of(gw, "auth"), signal.SIGKILL)
    codes = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        started = time.monotonic()
        code = request(port, "GET", "/api/x", headers=bearer())[0]
        assert time.monotonic() - started < 4
        codes.add(code)
        if code == 200:
            break
    assert 200 in codes and codes <= {200, 503}
    assert 'unikernel_auth "auth": timed out' in gw.errors()


def test_fail_open_goes_on_without_the_part(uk_gateway, upstream):
    keyless = "unikernel keyless { image auth; transport socketpair; }"
    gw = uk_gateway(lambda port: compose_config(port, upstream.address, auth="fail=open", pools=keyless)
                    .replace("location /private/ {", "location /keyless/ { unikernel_auth keyless fail=open; "
                             "proxy_pass http://%s; }\n        location /private/ {" % upstream.address))
    # A guest that answers without a verdict (it has no key) is misconfigured, not down: 503, never open.
    assert request(gw.port, "GET", "/keyless/x", headers=bearer())[0] == 503
    auth_pid = pid_of(gw, "auth")
    signal_qemu(auth_pid, signal.SIGSTOP)
    try:
        code, _, body = request(gw.port, "GET", "/api/open", headers=bearer())
    finally:
        signal_qemu(auth_pid, signal.SIGCONT)
    assert code == 200 and "x-user" not in upstream_headers(body)
    # fail=open applies to a pool that cannot answer, not to a credential it refuses.
    wait_for(lambda: request(gw.port, "GET", "/api/open", headers=bearer())[0] == 200, timeout=10,
             what="auth answering again")
    assert request(gw.port, "GET", "/api/open", headers={"Authorization": "Bearer x.y.z"})[0] == 401


def signed(body, key=HOOK_KEY):
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def status_of_upload(port, path, body, signature):
    """The status answered to an upload the server may refuse before it has read all of it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                     f"X-Hub-Signature-256: {signature}\r\n\r\n".encode())
        try:
            sock.sendall(body)
        except (BrokenPipeError, ConnectionResetError):
            pass        # answered and closed before the end: the answer is still there to read
        return int(sock.recv(65536).split(b" ", 2)[1])


def test_body_part_checks_webhook_signatures(uk_gateway, upstream):
    gw = uk_gateway(lambda port: compose_config(port, upstream.address))
    port = gw.port
    body = os.urandom(200_000)
    code, _, echoed = request(port, "POST", "/hooks/push", body=body,
                              headers={"X-Hub-Signature-256": signed(body)})
    assert code == 200
    assert orjson.loads(echoed)["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert seen(upstream) == ["POST /hooks/push"]

    refused = {
        "wrong key": ({"X-Hub-Signature-256": signed(body, b"other")}, 401),
        "other body": ({"X-Hub-Signature-256": signed(body + b"!")}, 401),
        "missing": ({}, 401),
        "malformed": ({"X-Hub-Signature-256": "sha256=xyz"}, 400),
    }
    for why, (headers, status) in refused.items():
        assert request(port, "POST", "/hooks/push", body=body, headers=headers)[0] == status, why
    # Over the wire protocol's 1 MiB (client_max_body_size is 4m there): refused while it arrives.
    too_big = b"x" * (1024 * 1024 + 1)
    assert status_of_upload(port, "/hooks/big", too_big, signed(too_big)) == 413
    assert seen(upstream) == ["POST /hooks/push"]

    # Auth and body together, the signature from a header named in the config.
    small = b'{"event": "ping"}'
    headers = {**bearer(), "X-Signature": signed(small)}
    assert request(port, "POST", "/signed/ping", body=small, headers=headers)[0] == 200
    assert request(port, "POST", "/signed/ping", body=small, headers={"X-Signature": signed(small)})[0] == 401
    assert request(port, "POST", "/signed/ping", body=small + b" ", headers=headers)[0] == 401
    assert seen(upstream) == ["POST /hooks/push", "POST /signed/ping"]


def test_keys_stay_on_their_shard_when_another_restarts(uk_gateway, upstream):
    """kv instances keep their names across restarts, so the ring does not move: after one of three
    shards is killed and replaced (empty), exactly the keys it owned miss; every other key still hits."""
    pools = "unikernel shards { image kv; instances 3 3; transport socketpair; " \
            "balance hash $request_uri consistent; setting ping_interval 100ms; setting backoff_min 20ms; }"
    gw = uk_gateway(lambda port: compose_config(port, upstream.address, pools=pools).replace(
        "unikernel_cache kv timeout=2s", "unikernel_cache shards timeout=2s"))
    port = gw.port
    paths = [f"/cache/key{n}" for n in range(60)]
    for path in paths:
        assert request(port, "GET", path)[1]["x-cache"] == "MISS"
    owner = Ring([f"shards-{i}" for i in range(3)])
    owners = {path: owner.lookup(b"http127.0.0.1" + path.encode()) for path in paths}
    assert len(set(owners.values())) == 3
    victim = next(i for i in instances(gw, "shards") if i["name"] == "shards-1")
    signal_qemu(victim["pid"], signal.SIGKILL)
    wait_for(lambda: any(i["name"] == "shards-1" and i["state"] == "ready" and i["pid"] != victim["pid"]
                         for i in instances(gw, "shards")), what="shards-1 replaced")
    got = {path: request(port, "GET", path)[1]["x-cache"] for path in paths}
    assert got == {path: "MISS" if owners[path] == "shards-1" else "HIT" for path in paths}


def test_signing_keys_never_reach_a_command_line(uk_gateway, upstream):
    """The auth and webhook keys are handed over after boot (AUTH_SETKEY, WEBHOOK_SETKEY): any local
    user can read a QEMU's command line, and it must not hold them; a restarted guest gets its key again."""
    gw = uk_gateway(lambda port: compose_config(port, upstream.address))
    pids = {name: [i["pid"] for i in instances(gw, name)] for name in ("auth", "hooks")}
    for name, key in (("auth", AUTH_KEY), ("hooks", HOOK_KEY)):
        for pid in pids[name]:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            assert b"qemu-system" in cmdline and key.hex().encode() not in cmdline and key not in cmdline
    assert request(gw.port, "GET", "/private/x", headers=bearer())[0] == 200
    signal_qemu(pids["auth"][0], signal.SIGKILL)
    wait_for(lambda: any(i["state"] == "ready" and i["pid"] != pids["auth"][0] for i in instances(gw, "auth")),
             what="auth restarted")
    assert request(gw.port, "GET", "/private/x", headers=bearer())[0] == 200


def slow_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_a_slow_fetch_holds_other_misses_for_five_seconds_at_most(uk_gateway, upstream):
    gw = uk_gateway(lambda port: compose_config(port, upstream.address))
    path = "/cache/slow/headers?ms=6500&Cache-Control=public,max-age=60"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(slow_get, gw.port, path)
        time.sleep(0.3)
        second = pool.submit(slow_get, gw.port, path)
        results = [first.result(), second.result()]
    assert [r[0] for r in results] == [200, 200]
    # The second gave up waiting after 5 s and fetched for itself, while the first's fetch ran.
    assert seen(upstream).count("GET " + path) == 2
