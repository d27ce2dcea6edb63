"""unikernel_pass through the gateway as a real process, to real QEMU workers, over both transports."""

import base64
import glob
import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.processes import ROOT, free_port

pytestmark = pytest.mark.qemu

AUTH_KEY = b"gateway test key"
TRANSPORTS = ["tap", "socketpair"]


def gateway_config(port, transport, pools="", locations="", settings=""):
    """A gateway config with the four services (small pools) plus extra pools and locations."""
    fast = f"setting ping_interval 100ms; setting hang_timeout 1s; setting backoff_min 20ms; {settings}"
    return f"""
worker_processes 1;
error_log error.log info;
pid gateway.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    unikernel echo {{ image echo; instances 2 2; transport {transport}; {fast} }}
    unikernel kv {{ image kv; instances 2 2; transport {transport}; balance hash $request_uri consistent; {fast} }}
    unikernel site {{ image static; transport {transport}; {fast} }}
    unikernel auth {{ image auth; transport {transport}; setting key {AUTH_KEY.hex()}; {fast} }}
    {pools}
    server {{
        listen 127.0.0.1:{port};
        location /echo/ {{ unikernel_pass echo; }}
        location /echo-body {{ unikernel_pass echo body; }}
        location /echo-args {{ unikernel_pass echo args; }}
        location /kv/ {{ unikernel_pass kv; }}
        location /site/ {{ unikernel_pass site; add_header X-Served-By unikernel; }}
        location /auth {{ unikernel_pass auth header:authorization; }}
        {locations}
    }}
}}
"""


def status(gateway):
    """The per-instance state the gateway's worker writes, merged over its status files."""
    pools = {}
    for path in glob.glob(str(gateway.dir / "logs" / "unikernel" / "status.*.json")):
        with open(path) as fh:
            data = json.load(fh)
        if _alive(data["pid"]):
            pools.update(data["pools"])
    return pools


def instances(gateway, pool):
    """The instances of one pool, from the status file."""
    return status(gateway).get(pool, {}).get("instances", [])


def qemu_pids(gateway):
    """Every QEMU pid any status file of this gateway ever named (instances and paused QEMUs)."""
    pids = set()
    for path in glob.glob(str(gateway.dir / "logs" / "unikernel" / "status.*.json")):
        with open(path) as fh:
            for pool in json.load(fh)["pools"].values():
                pids.update(i["pid"] for i in pool["instances"] + pool["paused"] if i["pid"])
    return pids


def taps(gateway):
    """Tap names named by this gateway's status files (instances' and paused QEMUs')."""
    names = set()
    for path in glob.glob(str(gateway.dir / "logs" / "unikernel" / "status.*.json")):
        with open(path) as fh:
            for pool in json.load(fh)["pools"].values():
                names.update(i["tap"] for i in pool["instances"] + pool["paused"] if i["tap"])
    return names


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def qemu_alive(pid):
    """Whether pid is a live QEMU process (not a zombie, not a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            is_qemu = b"qemu-system" in fh.read()
    except FileNotFoundError:
        return False
    return is_qemu and _alive(pid)


def signal_qemu(pid, signo):
    """Send signo to a QEMU the status file named; anything else is refused (pid 0 would signal
    this test's own process group)."""
    assert pid and qemu_alive(pid), f"pid {pid!r} is not a live QEMU"
    os.kill(pid, signo)


def wait_for(predicate, timeout=15.0, what="condition"):
    """Poll until predicate() is true; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def uk_gateway(start_gateway):
    """uk_gateway(config) -> a started Gateway with its port; any QEMU left behind is killed by pid after."""
    started = []

    def start(config_for_port):
        port = free_port()
        gateway = start_gateway(config_for_port(port), port)
        started.append(gateway)
        # Spares boot after the serving instances, paused QEMUs after both: wait for them as well. A
        # pool is listed before its instances are (and they with pid 0 until their QEMU starts), so count them.
        wait_for(lambda: (lambda pools: pools and all(
            all(i["state"] in ("ready", "spare") and i["pid"] for i in p["instances"])
            and sum(i["state"] == "ready" for i in p["instances"]) >= p["min"]
            and sum(i["state"] == "spare" for i in p["instances"]) == p["spares"]
            and [q["state"] for q in p["paused"]] == ["paused"] * p["prestart"]
            for p in pools.values()))(status(gateway)), what="every instance, spare and paused QEMU ready")
        return gateway
    try:
        yield start
    finally:
        for gateway in started:
            gateway.stop()
            for pid in qemu_pids(gateway):
                if qemu_alive(pid):
                    os.kill(pid, signal.SIGKILL)


def request(port, method, path, body=None, headers=None):
    """(status, headers dict, body) of one request on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def jwt(claims, key=AUTH_KEY, alg="HS256"):
    """A compact JWT signed with HMAC-SHA256."""
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=")
    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(key, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_four_services_over_http(uk_gateway, transport):
    gw = uk_gateway(lambda port: gateway_config(port, transport))
    port = gw.port
    assert all(p["transport"] == transport for p in status(gw).values())
    # echo: the configured part comes back as octets.
    assert request(port, "GET", "/echo/hello")[::2] == (200, b"/hello")
    big = os.urandom(300_000)
    code, headers, body = request(port, "POST", "/echo-body", big)
    assert (code, headers["content-type"], body == big) == (200, "application/octet-stream", True)
    assert request(port, "GET", "/echo-args?a=1&b=2")[2] == b"a=1&b=2"
    # kv: put, get, delete, TTL; consistent hashing keeps every key on its instance.
    for n in range(20):
        assert request(port, "PUT", f"/kv/key{n}", f"value{n}".encode())[0] == 204
    for n in range(20):
        assert request(port, "GET", f"/kv/key{n}")[::2] == (200, f"value{n}".encode())
    assert request(port, "HEAD", "/kv/key1")[0] == 200
    assert request(port, "DELETE", "/kv/key1")[0] == 204
    assert request(port, "GET", "/kv/key1")[0] == 404
    assert request(port, "DELETE", "/kv/key1")[0] == 404
    # The entry's key decides the instance, not the hashed $request_uri: "?ttl=" does not move it.
    for n in range(10):
        assert request(port, "PUT", f"/kv/t{n}?ttl=100", b"x")[0] == 204
        assert request(port, "PUT", f"/kv/h{n}", b"y", {"X-TTL": "100"})[0] == 204
    for n in range(10):
        assert request(port, "GET", f"/kv/t{n}")[::2] == (200, b"x")
        assert request(port, "GET", f"/kv/h{n}?whatever")[::2] == (200, b"y")
    # The guest has no clock: every request carries the gateway's, so a 1 s TTL runs out.
    assert request(port, "PUT", "/kv/brief?ttl=1", b"x")[0] == 204
    time.sleep(2.0)
    assert request(port, "GET", "/kv/brief")[0] == 404
    assert request(port, "PUT", "/kv/bad", b"x", {"X-TTL": "soon"})[0] == 400
    assert request(port, "PATCH", "/kv/a", b"x")[0] == 405
    # static: type, ETag, 304, HEAD, 404, and the location's add_header.
    code, headers, body = request(port, "GET", "/site/")
    assert code == 200 and headers["content-type"].startswith("text/html") and b"<" in body
    assert headers["x-served-by"] == "unikernel"
    etag = headers["etag"]
    assert request(port, "GET", "/site/index.html")[1]["etag"] == etag
    code, headers, body = request(port, "GET", "/site/", headers={"If-None-Match": etag})
    assert (code, headers["etag"], body) == (304, etag, b"")
    code, headers, body = request(port, "HEAD", "/site/style.css")
    assert (code, headers["content-type"].startswith("text/css"), body) == (200, True, b"")
    assert request(port, "GET", "/site/missing.html")[0] == 404
    assert request(port, "GET", "/site/.secret")[0] == 404
    assert request(port, "POST", "/site/", b"x")[0] == 405
    # auth: the bearer token is verified with the key given at boot, against the gateway's clock.
    now = int(time.time())
    code, headers, body = request(port, "GET", "/auth", headers={"Authorization": "Bearer " + jwt(
        {"sub": "ann", "exp": now + 60})})
    assert (code, json.loads(body)["sub"]) == (200, "ann")
    assert request(port, "GET", "/auth", headers={"Authorization": "Bearer " + jwt(
        {"sub": "ann", "exp": now - 1})})[0] == 401
    assert request(port, "GET", "/auth", headers={"Authorization": "Bearer " + jwt(
        {"sub": "ann"}, key=b"wrong")})[0] == 401
    assert request(port, "GET", "/auth", headers={"Authorization": "Bearer " + jwt(
        {"sub": "ann"}, alg="none")})[0] == 401
    code, headers, _ = request(port, "GET", "/auth")
    assert code == 401 and headers["www-authenticate"].startswith("Bearer")
    assert "Traceback" not in gw.errors()


def test_the_status_file_counts_the_requests_each_instance_served(uk_gateway):
    gw = uk_gateway(lambda port: gateway_config(port, "socketpair"))
    for n in range(10):
        assert request(gw.port, "GET", f"/echo/{n}")[0] == 200
    # Round robin over the two echo instances; the counts are written within a second.
    served = wait_for(lambda: (lambda counts: counts if sum(counts) == 10 else None)(
        [i["served"] for i in instances(gw, "echo")]), 5, "the served counts written")
    assert served == [5, 5]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_shutdown_leaves_no_qemu_and_no_tap(uk_gateway, transport):
    gw = uk_gateway(lambda port: gateway_config(port, transport))
    pids = qemu_pids(gw)
    names = taps(gw)
    # Six instances and a paused QEMU per pool.
    assert len(pids) == 6 + 4 and all(qemu_alive(pid) for pid in pids)
    assert len(names) == (6 + 4 if transport == "tap" else 0)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert all(f" {name}:" in links for name in names)
    gw.stop()
    assert gw.proc.returncode == 0
    assert not [pid for pid in pids if qemu_alive(pid)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not [name for name in names if f" {name}:" in links]
    [path] = glob.glob(str(gw.dir / "logs" / "unikernel" / "status.*.json"))
    with open(path) as fh:
        states = {i["state"] for p in json.load(fh)["pools"].values() for i in p["instances"]}
    assert states == {"stopped"}


def test_a_crashed_gateway_worker_takes_its_qemus_along(uk_gateway):
    gw = uk_gateway(lambda port: gateway_config(port, "tap"))
    first = status(gw)
    worker = json.load(open(glob.glob(str(gw.dir / "logs" / "unikernel" / "status.*.json"))[0]))["pid"]
    pids = qemu_pids(gw)
    names = taps(gw)
    os.kill(worker, signal.SIGKILL)
    # PR_SET_PDEATHSIG: the kernel kills every QEMU of the dead worker; its taps go with their fds.
    wait_for(lambda: not [pid for pid in pids if qemu_alive(pid)], 5, "QEMUs of the dead worker gone")
    links = wait_for(lambda: (lambda text: text if not [n for n in names if f" {n}:" in text] else None)(
        subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout), 5, "taps gone")
    assert links
    # The master removes the private image copies the dead worker could not.
    wait_for(lambda: not glob.glob(f"/tmp/gateway-images-{worker}-*"), 5, "its image copies gone")
    # The master starts a new worker, with new instances that serve.
    wait_for(lambda: status(gw) and all(i["state"] == "ready" for p in status(gw).values()
                                        for i in p["instances"]), what="the new worker's instances")
    assert status(gw).keys() == first.keys()
    assert request(gw.port, "GET", "/echo/again")[::2] == (200, b"/again")


def test_missing_image_stops_the_gateway_with_one_sentence(tmp_path):
    port = free_port()
    conf = tmp_path / "gateway.conf"
    conf.write_text(gateway_config(port, "socketpair").replace("image echo;", "image /nonexistent/echo.elf;"))
    done = subprocess.run([sys.executable, "-m", "gateway", "-p", str(tmp_path), "-c", str(conf),
                           "-g", "daemon off;"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    text = (tmp_path / "error.log").read_text() + done.stderr
    assert done.returncode != 0
    assert 'unikernel "echo": unikernel image "/nonexistent/echo.elf" not found: build it with make ' \
           '-C unikernels' in text
    assert "Traceback" not in text
    assert not list(glob.glob(str(tmp_path / "logs" / "unikernel" / "*.console")))


def test_each_worker_process_has_its_own_instances(uk_gateway):
    gw = uk_gateway(lambda port: gateway_config(port, "tap").replace("worker_processes 1;", "worker_processes 2;"))
    files = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
        glob.glob(str(gw.dir / "logs" / "unikernel" / "status.*.json"))), what="two status files")
    workers = [json.load(open(path)) for path in files]
    wait_for(lambda: all(i["state"] == "ready" for path in files for p in json.load(open(path))["pools"].values()
                         for i in p["instances"]), what="both workers' instances ready")
    pids = [{i["pid"] for p in w["pools"].values() for i in p["instances"]} for w in workers]
    names = [{i["tap"] for p in w["pools"].values() for i in p["instances"]} for w in workers]
    assert len(pids[0]) == len(pids[1]) == 6 and not pids[0] & pids[1]
    assert not names[0] & names[1]
    for n in range(10):
        assert request(gw.port, "GET", f"/echo/{n}")[::2] == (200, f"/{n}".encode())
    gw.stop()
    assert not [pid for pid in pids[0] | pids[1] if qemu_alive(pid)]
