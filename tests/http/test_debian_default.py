"""Debian's stock /etc/nginx/nginx.conf, unchanged, served by nginx and by the gateway.

Each server runs in its own network and mount namespace (so port 80, /run/nginx.pid and
/var/log/nginx are private to it), and the client runs inside that namespace too.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.support.processes import NGINX, ROOT, stop

pytestmark = [pytest.mark.nginx,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                 reason="needs root and unshare for private namespaces")]

STOCK = "/etc/nginx/nginx.conf"

# Private /run and log folder, loopback up, then the server in the foreground.
NAMESPACE_SETUP = ("mount --make-rprivate / && mount -t tmpfs tmpfs /run && "
                   "mount -t tmpfs tmpfs /var/log/nginx && ip link set lo up && exec ")

CLIENT = """
import socket, sys, time
deadline = time.time() + 15
while True:
    try:
        sock = socket.create_connection(("127.0.0.1", 80), timeout=5)
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.05)
sock.sendall(sys.argv[1].encode().decode("unicode_escape").encode("latin-1"))
data = b""
while chunk := sock.recv(65536):
    data += chunk
sys.stdout.buffer.write(data)
"""


def start_in_namespace(command: str) -> subprocess.Popen:
    return subprocess.Popen(["unshare", "--mount", "--net", "sh", "-c", NAMESPACE_SETUP + command],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def ask(server: subprocess.Popen, request: str) -> tuple[int, dict, bytes]:
    out = subprocess.run(["nsenter", f"--net=/proc/{server.pid}/ns/net", sys.executable, "-c",
                          CLIENT, request], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr.decode()
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


@pytest.fixture(scope="module")
def servers():
    if not os.path.exists(STOCK):
        pytest.fail("nginx-light is not installed: /etc/nginx/nginx.conf is missing")
    nginx = start_in_namespace(f"{NGINX} -c {STOCK} -g 'daemon off;'")
    gateway = start_in_namespace(
        f"env PYTHONPATH={ROOT} {sys.executable} -m gateway -c {STOCK} -g 'daemon off;'")
    try:
        time.sleep(0.5)
        yield nginx, gateway
    finally:
        stop(gateway)
        stop(nginx)


@pytest.mark.parametrize("request_text", [
    "GET / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n",
    "HEAD / HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n",
    "GET /index.nginx-debian.html HTTP/1.0\\r\\n\\r\\n",
    "GET /missing HTTP/1.1\\r\\nHost: other\\r\\nConnection: close\\r\\n\\r\\n",
])
def test_stock_debian_config_serves_what_nginx_serves(servers, request_text):
    nginx, gateway = servers
    want_status, want_headers, want_body = ask(nginx, request_text)
    got_status, got_headers, got_body = ask(gateway, request_text)
    assert got_status == want_status
    compared = ["content-type", "last-modified", "etag", "accept-ranges", "connection"]
    if want_status == 200:     # error pages carry each server's own name and version
        compared.append("content-length")
    for name in compared:
        assert got_headers.get(name) == want_headers.get(name), name
    assert set(got_headers) == set(want_headers)
    if want_status == 200:
        assert got_body == want_body


def test_workers_run_as_the_configured_user(servers):
    _, gateway = servers
    # unshare -> sh (exec'd into the master) -> workers: find the gateway's workers by parentage.
    master = gateway.pid
    deadline = time.time() + 10
    workers = []
    while time.time() < deadline and not workers:
        out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
        workers = [int(pid) for pid in out.stdout.split()]
        time.sleep(0.1)
    assert workers, "the gateway master has no worker processes"
    for pid in workers:
        with open(f"/proc/{pid}/status") as status:
            uid_line = next(line for line in status if line.startswith("Uid:"))
        import pwd
        assert int(uid_line.split()[1]) == pwd.getpwnam("www-data").pw_uid
