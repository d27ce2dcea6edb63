"""TLS termination, side by side with real nginx: one config, the same clients, the same answers.

Certificates are made here with trustme (an RSA chain through an intermediate CA and an
ECDSA certificate for one name, an RSA one for another).  Clients are curl and Python's
ssl, always on loopback.  Each case runs against the gateway and nginx and compares.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass

import pytest

from tests.support.certs import Certificates
from tests.support.processes import EchoBackend, Gateway, Nginx, free_port

pytestmark = pytest.mark.nginx

CURL = shutil.which("curl") or "/usr/bin/curl"

SITE = """
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type text/plain;
    client_header_timeout 2s;
    ssl_certificate {a_rsa.cert};
    ssl_certificate_key {a_rsa.key};
    ssl_certificate {a_ec.cert};
    ssl_certificate_key {a_ec.key};
    server {{
        listen 127.0.0.1:{tls} ssl default_server;
        server_name a.test;
        ssl_protocols TLSv1.2 TLSv1.3;     # nginx 1.22's default lacks TLSv1.3
        location / {{ return 200 "a|$https|$ssl_protocol|$ssl_server_name|$scheme|$host|$ssl_session_reused\\n"; }}
        location /cipher {{ return 200 "$ssl_cipher\\n"; }}
        location /moved {{ return 301 /elsewhere; }}
        location /proxy/ {{
            proxy_pass http://{backend};
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Https $https;
            proxy_set_header X-Tls $ssl_protocol;
        }}
    }}
    server {{
        listen 127.0.0.1:{tls};
        server_name b.test;
        ssl_certificate {b.cert};
        ssl_certificate_key {b.key};
        location / {{ return 200 "b|$https|$ssl_server_name|$host\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{tls12} ssl;
        server_name a.test;
        ssl_protocols TLSv1.2;
        location / {{ return 200 "$ssl_protocol\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{tls_default} ssl;
        location / {{ return 200 "$ssl_protocol\n"; }}
    }}
    server {{
        listen 127.0.0.1:{plain};
        location / {{ return 200 "plain|$https|$ssl_protocol|$scheme\\n"; }}
    }}
}}
"""


@dataclass
class Site:
    """One running server (gateway or nginx) and its ports."""

    name: str
    tls: int
    tls12: int
    tls_default: int
    plain: int
    process: object


@dataclass
class Answer:
    status: int
    headers: dict
    body: str
    version: str
    peer_der: bytes
    alpn: str | None
    reused: bool
    session: object


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    made = Certificates(tmp_path_factory.mktemp("certs"))
    made.a_rsa = made.issue("a-rsa", "a.test", via_intermediate=True)
    made.a_ec = made.issue("a-ec", "a.test", ecdsa=True)
    made.b = made.issue("b", "b.test")
    return made


@pytest.fixture(scope="module")
def sites(tmp_path_factory, certs):
    backend = EchoBackend("app")
    started = {}
    try:
        for name, kind in (("gateway", Gateway), ("nginx", Nginx)):
            tmp = tmp_path_factory.mktemp(name)
            ports = {"tls": free_port(), "tls12": free_port(), "tls_default": free_port(),
                     "plain": free_port()}
            config = SITE.format(dir=tmp, backend=backend.address, a_rsa=certs.a_rsa,
                                 a_ec=certs.a_ec, b=certs.b, **ports)
            started[name] = Site(name, process=kind(tmp, config, ports["plain"]), **ports)
        yield started
    finally:
        for site in started.values():
            site.process.stop()
        backend.stop()


def exchange(port, path="/", *, sni=None, host="a.test", ctx=None, session=None) -> Answer:
    """One GET over a fresh TLS connection (SNI ``sni``, None for none) with Python's ssl."""
    if ctx is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                        .encode())
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            return Answer(int(lines[0].split()[1]), headers, body.decode(), tls.version(),
                          tls.getpeercert(binary_form=True), tls.selected_alpn_protocol(),
                          tls.session_reused, tls.session)


def curl(*args) -> subprocess.CompletedProcess:
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=20)


def both(sites, call):
    """call(site) on the gateway and on nginx: (gateway's result, nginx's result)."""
    return call(sites["gateway"]), call(sites["nginx"])


def test_sni_picks_the_server_curl_verifies_its_certificate(sites, certs):
    def run(site):
        return curl("--cacert", certs.ca_file, "--resolve", f"b.test:{site.tls}:127.0.0.1",
                    f"https://b.test:{site.tls}/x")
    ours, theirs = both(sites, run)
    assert theirs.returncode == 0, theirs.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout == "b|on|b.test|b.test\n"


def test_default_server_and_its_chain_for_a_verifying_client(sites, certs):
    def run(site):
        return curl("--cacert", certs.ca_file, "--resolve", f"a.test:{site.tls}:127.0.0.1",
                    f"https://a.test:{site.tls}/x")
    ours, theirs = both(sites, run)
    assert ours.returncode == theirs.returncode == 0, (ours.stderr, theirs.stderr)
    assert ours.stdout == theirs.stdout == "a|on|TLSv1.3|a.test|https|a.test|.\n"


def test_no_sni_gets_the_default_server(sites, certs):
    ours, theirs = both(sites, lambda s: exchange(s.tls, host="b.test"))
    # The Host header still routes (to b) after a handshake made with the default cert.
    assert ours.body == theirs.body == "b|on||b.test\n"
    assert ours.peer_der == theirs.peer_der
    assert ours.peer_der in (certs.a_rsa.der, certs.a_ec.der)


def test_host_header_routes_after_the_handshake(sites):
    ours, theirs = both(sites, lambda s: exchange(s.tls, sni="b.test", host="a.test"))
    assert ours.status == theirs.status == 200
    assert ours.body == theirs.body == "a|on|TLSv1.3|b.test|https|a.test|.\n"


def test_unknown_sni_gets_the_default_certificate(sites, certs):
    ours, theirs = both(sites, lambda s: exchange(s.tls, sni="c.test", host="c.test"))
    assert ours.body == theirs.body == "a|on|TLSv1.3|c.test|https|c.test|.\n"
    assert ours.peer_der == theirs.peer_der


@pytest.mark.parametrize("cipher,pair", [("ECDHE-ECDSA-AES128-GCM-SHA256", "a_ec"),
                                         ("ECDHE-RSA-AES128-GCM-SHA256", "a_rsa")])
def test_the_certificate_matching_the_client_key_type(sites, certs, cipher, pair):
    ctx = certs.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    ours, theirs = both(sites, lambda s: exchange(s.tls, "/cipher", sni="a.test", ctx=ctx))
    assert ours.peer_der == theirs.peer_der == getattr(certs, pair).der
    assert ours.version == theirs.version == "TLSv1.2"
    assert ours.body == theirs.body == f"{cipher}\n"


def test_tls11_refused_by_default(sites):
    def run(site, version):
        return curl("-k", f"--tlsv{version}", "--tls-max", version, "--ciphers",
                    "DEFAULT:@SECLEVEL=0", f"https://127.0.0.1:{site.tls_default}/")
    ours, theirs = both(sites, lambda s: run(s, "1.1"))
    assert theirs.returncode != 0
    assert ours.returncode == theirs.returncode, ours.stderr
    # The same client with TLS 1.2 gets in: the refusal above is about the version.
    ours, theirs = both(sites, lambda s: run(s, "1.2"))
    assert ours.returncode == theirs.returncode == 0, (ours.stderr, theirs.stderr)
    assert ours.stdout == theirs.stdout == "TLSv1.2\n"


def test_tls13_is_in_the_default_protocols(sites):
    # nginx's default since 1.23.4; Debian's nginx 1.22 still says "TLSv1 TLSv1.1 TLSv1.2".
    assert exchange(sites["gateway"].tls_default).body == "TLSv1.3\n"


def test_ssl_protocols_limits_the_socket(sites):
    ours, theirs = both(sites, lambda s: exchange(s.tls12, sni="a.test"))
    assert ours.body == theirs.body == "TLSv1.2\n"
    only13 = ssl.create_default_context()
    only13.check_hostname, only13.verify_mode = False, ssl.CERT_NONE
    only13.minimum_version = ssl.TLSVersion.TLSv1_3
    for site in sites.values():
        with pytest.raises(ssl.SSLError):
            exchange(site.tls12, sni="a.test", ctx=only13)


def test_alpn_offers_http11(sites):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ours, theirs = both(sites, lambda s: exchange(s.tls, sni="a.test", ctx=ctx))
    assert ours.alpn == theirs.alpn == "http/1.1"


def test_redirects_are_made_absolute_with_https(sites):
    ours, theirs = both(sites, lambda s: exchange(s.tls, "/moved", sni="a.test"))
    assert ours.status == theirs.status == 301
    assert ours.headers["Location"] == f"https://a.test:{sites['gateway'].tls}/elsewhere"
    assert theirs.headers["Location"] == f"https://a.test:{sites['nginx'].tls}/elsewhere"


def test_scheme_and_ssl_variables_reach_the_upstream(sites):
    ours, theirs = both(sites, lambda s: exchange(s.tls, "/proxy/x", sni="a.test"))
    assert ours.status == theirs.status == 200

    def sent(answer):
        headers = dict(json.loads(answer.body)["headers"])
        return headers["x-forwarded-proto"], headers["x-https"], headers["x-tls"]
    assert sent(ours) == sent(theirs) == ("https", "on", "TLSv1.3")


def test_plain_listener_has_empty_ssl_variables(sites):
    def run(site):
        return curl(f"http://127.0.0.1:{site.plain}/")
    ours, theirs = both(sites, run)
    assert ours.stdout == theirs.stdout == "plain|||http\n"


def test_session_resumption(sites):
    def run(site):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        first = exchange(site.tls, sni="a.test", ctx=ctx)
        return exchange(site.tls, sni="a.test", ctx=ctx, session=first.session)
    ours, theirs = both(sites, run)
    assert theirs.reused and theirs.body.endswith("|r\n")
    assert ours.reused and ours.body == theirs.body


def test_keep_alive_requests_over_one_tls_connection(sites, certs):
    import http.client
    ctx = certs.client_context()
    conn = http.client.HTTPSConnection("127.0.0.1", sites["gateway"].tls, context=ctx,
                                       timeout=10)
    ctx.check_hostname = False
    bodies = []
    for i in range(5):
        conn.request("GET", f"/proxy/{i}", headers={"Host": "a.test"})
        response = conn.getresponse()
        bodies.append(json.loads(response.read())["target"])
    conn.close()
    assert bodies == [f"/proxy/{i}" for i in range(5)]


def test_a_stalled_handshake_is_cut_by_client_header_timeout(sites):
    def run(site):
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", site.tls), timeout=10) as raw:
            try:
                data = raw.recv(1)     # no ClientHello: the server must give up
            except ConnectionResetError:
                data = b""
        return data, time.monotonic() - started
    (ours, ours_took), (theirs, theirs_took) = both(sites, run)
    assert ours == theirs == b""
    assert 1.5 <= theirs_took < 6
    assert 1.5 <= ours_took < 6


def test_large_response_over_tls_arrives_whole(sites):
    # Several writes of a long relay: had any gone straight to the socket (a direct
    # send), the client would see bytes that are not TLS records and fail.
    ours = exchange(sites["gateway"].tls, "/proxy/big?n=3000000", sni="a.test")
    assert ours.status == 200 and ours.body == "x" * 3000000


def test_certificates_are_read_again_on_reload(tmp_path, certs):
    first = certs.issue("reload", "a.test")
    port = free_port()
    config = (f"error_log {tmp_path}/error.log info;\npid {tmp_path}/server.pid;\n"
              f"events {{}}\nhttp {{\n server {{\n  listen 127.0.0.1:{port} ssl;\n"
              f"  ssl_certificate {first.cert};\n  ssl_certificate_key {first.key};\n"
              f'  location / {{ return 200 "ok\\n"; }}\n }}\n}}\n')
    gateway = Gateway(tmp_path, config, port)
    try:
        assert exchange(port).peer_der == first.der
        second = certs.issue("reload", "a.test")       # new files at the same paths
        assert second.der != first.der
        os.kill(gateway.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while exchange(port).peer_der != second.der:
            assert time.monotonic() < deadline, gateway.errors()
            time.sleep(0.2)
    finally:
        gateway.stop()


def test_graceful_stop_does_not_wait_for_idle_tls_clients(tmp_path, certs):
    port = free_port()
    config = (f"error_log {tmp_path}/error.log info;\npid {tmp_path}/server.pid;\n"
              f"events {{}}\nhttp {{\n server {{\n  listen 127.0.0.1:{port} ssl;\n"
              f"  ssl_certificate {certs.b.cert};\n  ssl_certificate_key {certs.b.key};\n"
              f'  location / {{ return 200 "ok\\n"; }}\n }}\n}}\n')
    gateway = Gateway(tmp_path, config, port)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="b.test") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n")
                assert tls.recv(100).startswith(b"HTTP/1.1 200")
                # Idle on keep-alive and never answering a close_notify, like many clients.
                started = time.monotonic()
                os.kill(gateway.proc.pid, signal.SIGQUIT)
                gateway.proc.wait(20)
                assert time.monotonic() - started < 3
    finally:
        gateway.stop()


def test_graceful_stop_finishes_handshakes_already_accepted(tmp_path, certs):
    port = free_port()
    config = (f"error_log {tmp_path}/error.log info;\npid {tmp_path}/server.pid;\n"
              f"events {{}}\nhttp {{\n server {{\n  listen 127.0.0.1:{port} ssl;\n"
              f"  ssl_certificate {certs.b.cert};\n  ssl_certificate_key {certs.b.key};\n"
              f'  location / {{ return 200 "ok\\n"; }}\n }}\n}}\n')
    gateway = Gateway(tmp_path, config, port)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            time.sleep(0.3)                  # accepted by the worker, no ClientHello yet
            os.kill(gateway.proc.pid, signal.SIGQUIT)
            time.sleep(0.2)
            with ctx.wrap_socket(raw, server_hostname="b.test") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n")
                answer = b""
                while chunk := tls.recv(1000):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer
        gateway.proc.wait(10)
    finally:
        gateway.stop()


def test_keepalive_timeout_closes_at_once_like_nginx(tmp_path_factory, certs):
    """After keepalive_timeout both send close_notify and close, without waiting for the answer."""
    def idle_close(kind):
        tmp = tmp_path_factory.mktemp(f"idle-{kind.__name__}")
        port = free_port()
        config = (f"error_log {tmp}/error.log info;\npid {tmp}/server.pid;\nevents {{}}\n"
                  f"http {{\n keepalive_timeout 1s;\n ssl_protocols TLSv1.2 TLSv1.3;\n"
                  f" server {{\n  listen 127.0.0.1:{port} ssl;\n"
                  f"  ssl_certificate {certs.b.cert};\n  ssl_certificate_key {certs.b.key};\n"
                  f'  location / {{ return 200 "ok\\n"; }}\n }}\n}}\n')
        server = kind(tmp, config, port)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="b.test") as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: b.test\r\n\r\n")
                    assert tls.recv(1000).startswith(b"HTTP/1.1 200")
                    time.sleep(2.5)
                    # The TCP bytes under TLS, up to the FIN: a close_notify record, then
                    # the end, not a connection kept open until the client answers it.
                    tls.setblocking(False)
                    received = b""
                    try:
                        while chunk := os.read(tls.fileno(), 4096):
                            received += chunk
                    except BlockingIOError:
                        return received, "still open"
                    return received, "closed"
        finally:
            server.stop()
    theirs, ours = idle_close(Nginx), idle_close(Gateway)
    assert theirs[1] == ours[1] == "closed"
    # One TLS 1.3 record of 19 bytes (an encrypted alert, as every record after the
    # handshake): the close_notify, then the FIN.
    assert theirs[0][:5] == ours[0][:5] == b"\x17\x03\x03\x00\x13"
    assert len(theirs[0]) == len(ours[0]) == 24


# Upstream TLS: proxy_pass https://... ------------------------------------------------------

UPSTREAM = """
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {up.cert};
        ssl_certificate_key {up.key};
        location / {{ return 200 "up|$ssl_server_name|$https|$request_uri|$connection\\n"; }}
    }}
}}
"""

PROXY = """
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    # One upstream per case: nginx reuses a peer's TLS session across the locations using
    # its upstream (proxy_ssl_session_reuse), which would skip the checks compared here.
    upstream verified {{ server 127.0.0.1:{up}; }}
    upstream no_sni {{ server 127.0.0.1:{up}; }}
    upstream wrong_name {{ server 127.0.0.1:{up}; }}
    upstream untrusted {{ server 127.0.0.1:{up}; }}
    upstream pooled {{ server 127.0.0.1:{up}; keepalive 4; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_ssl_trusted_certificate {ca};
        location /ip/ {{ proxy_pass https://127.0.0.1:{up}/; }}
        location /verified/ {{
            proxy_pass https://verified/;
            proxy_ssl_verify on;
            proxy_ssl_name up.test;
            proxy_ssl_server_name on;
        }}
        location /verified-no-sni/ {{
            proxy_pass https://no_sni/;
            proxy_ssl_verify on;
            proxy_ssl_name up.test;
        }}
        location /wrong-name/ {{
            proxy_pass https://wrong_name/;
            proxy_ssl_verify on;
            proxy_ssl_name wrong.test;
            proxy_ssl_server_name on;
        }}
        location /untrusted/ {{
            proxy_pass https://untrusted/;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {other_ca};
            proxy_ssl_name up.test;
        }}
        location /keepalive/ {{
            proxy_pass https://pooled/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_server_name on;
            proxy_ssl_name up.test;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def proxies(tmp_path_factory, certs):
    other = Certificates(tmp_path_factory.mktemp("other-ca"))
    up_pair = certs.issue("up", "up.test", via_intermediate=True)
    up_port = free_port()
    tmp = tmp_path_factory.mktemp("upstream")
    upstream = Nginx(tmp, UPSTREAM.format(dir=tmp, port=up_port, up=up_pair), up_port)
    started = {}
    try:
        for name, kind in (("gateway", Gateway), ("nginx", Nginx)):
            tmp = tmp_path_factory.mktemp(f"{name}-proxy")
            port = free_port()
            config = PROXY.format(dir=tmp, port=port, up=up_port, ca=certs.ca_file,
                                  other_ca=other.ca_file)
            started[name] = (kind(tmp, config, port), port)
        yield started
    finally:
        for process, _ in started.values():
            process.stop()
        upstream.stop()


def get(port, path, conn=None):
    import http.client
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read().decode()
    if own:
        conn.close()
    return response.status, body


def _without_connection(body):
    return body.rsplit("|", 1)[0] if body.startswith("up|") else body


@pytest.mark.parametrize("path,status,body", [
    ("/ip/a", 200, "up||on|/a"),                         # an address: no SNI, no check
    ("/verified/b", 200, "up|up.test|on|/b"),            # chain and name verified, SNI sent
    ("/verified-no-sni/c", 200, "up||on|/c"),            # verified without sending the name
    ("/wrong-name/d", 502, None),
    ("/untrusted/e", 502, None),
])
def test_https_upstreams_like_nginx(proxies, path, status, body):
    (gateway, ours_port), (nginx, theirs_port) = proxies["gateway"], proxies["nginx"]
    ours, theirs = get(ours_port, path), get(theirs_port, path)
    assert ours[0] == theirs[0] == status
    if body is not None:
        assert _without_connection(ours[1]) == _without_connection(theirs[1]) == body


def test_https_upstream_connections_are_kept_alive(proxies):
    import http.client
    seen = {}
    for name, (_, port) in proxies.items():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        bodies = [get(port, f"/keepalive/{i}", conn)[1] for i in range(3)]
        conn.close()
        assert [b.split("|")[:4] for b in bodies] == [
            ["up", "up.test", "on", f"/{i}"] for i in range(3)]
        seen[name] = {b.rsplit("|", 1)[1] for b in bodies}
    # The upstream saw one connection for the three requests, from each proxy.
    assert len(seen["gateway"]) == len(seen["nginx"]) == 1


def test_ssl_dhparam_enables_dhe_like_nginx(tmp_path_factory, certs):
    dhparam = tmp_path_factory.mktemp("dh") / "dh.pem"
    subprocess.run(["openssl", "dhparam", "-dsaparam", "-out", str(dhparam), "2048"],
                   check=True, capture_output=True, timeout=120)
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    client.set_ciphers("DHE-RSA-AES128-GCM-SHA256")

    def run(kind):
        tmp = tmp_path_factory.mktemp(f"dh-{kind.__name__}")
        with_dh, without = free_port(), free_port()
        config = (f"error_log {tmp}/error.log info;\npid {tmp}/server.pid;\nevents {{}}\n"
                  f"http {{\n ssl_certificate {certs.b.cert};\n ssl_certificate_key {certs.b.key};\n"
                  f" server {{\n  listen 127.0.0.1:{with_dh} ssl;\n  ssl_dhparam {dhparam};\n"
                  f'  location / {{ return 200 "$ssl_cipher\\n"; }}\n }}\n'
                  f" server {{\n  listen 127.0.0.1:{without} ssl;\n"
                  f'  location / {{ return 200 "$ssl_cipher\\n"; }}\n }}\n}}\n')
        server = kind(tmp, config, without)
        try:
            body = exchange(with_dh, sni="b.test", ctx=client).body
            try:
                exchange(without, sni="b.test", ctx=client)
                refused = False
            except ssl.SSLError:
                refused = True
            return body, refused
        finally:
            server.stop()
    assert run(Nginx) == run(Gateway) == ("DHE-RSA-AES128-GCM-SHA256\n", True)


def test_ssl_ecdh_curve_limits_the_groups_like_nginx(tmp_path_factory, certs):
    def client(curve):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.set_ecdh_curve(curve)        # the only group the client offers
        return ctx

    def run(kind):
        tmp = tmp_path_factory.mktemp(f"curve-{kind.__name__}")
        port = free_port()
        config = (f"error_log {tmp}/error.log info;\npid {tmp}/server.pid;\nevents {{}}\n"
                  f"http {{\n ssl_protocols TLSv1.2 TLSv1.3;\n ssl_ecdh_curve secp384r1;\n"
                  f" server {{\n  listen 127.0.0.1:{port} ssl;\n"
                  f"  ssl_certificate {certs.b.cert};\n  ssl_certificate_key {certs.b.key};\n"
                  f'  location / {{ return 200 "$ssl_protocol\\n"; }}\n }}\n}}\n')
        server = kind(tmp, config, port)
        try:
            agreed = exchange(port, sni="b.test", ctx=client("secp384r1")).body
            try:
                exchange(port, sni="b.test", ctx=client("prime256v1"))
                refused = False
            except ssl.SSLError:
                refused = True
            return agreed, refused
        finally:
            server.stop()
    assert run(Nginx) == run(Gateway) == ("TLSv1.3\n", True)


def test_ssl_ciphers_and_server_preference_like_nginx(tmp_path_factory, certs):
    def client(ciphers):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
        return ctx

    def run(kind):
        tmp = tmp_path_factory.mktemp(f"ciphers-{kind.__name__}")
        port = free_port()
        config = (f"error_log {tmp}/error.log info;\npid {tmp}/server.pid;\nevents {{}}\n"
                  f"http {{\n ssl_ciphers ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256;\n"
                  f" ssl_prefer_server_ciphers on;\n"
                  f" server {{\n  listen 127.0.0.1:{port} ssl;\n"
                  f"  ssl_certificate {certs.b.cert};\n  ssl_certificate_key {certs.b.key};\n"
                  f'  location / {{ return 200 "$ssl_cipher\\n"; }}\n }}\n}}\n')
        server = kind(tmp, config, port)
        try:
            # The client lists AES128 first; the server's order wins.
            chosen = exchange(port, sni="b.test", ctx=client(
                "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384")).body
            try:
                exchange(port, sni="b.test", ctx=client("ECDHE-RSA-CHACHA20-POLY1305"))
                refused = False
            except ssl.SSLError:
                refused = True
            return chosen, refused
        finally:
            server.stop()
    assert run(Nginx) == run(Gateway) == ("ECDHE-RSA-AES256-GCM-SHA384\n", True)
