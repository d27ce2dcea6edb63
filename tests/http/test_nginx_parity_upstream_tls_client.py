"""Side by side with real nginx: a client certificate for an upstream that asks for one, the
upstream context's protocols and ciphers, and a CRL (proxy_ssl_certificate and friends).

Real nginx is the upstream: it requires a certificate from the test CA and answers with the
subject it saw.  nginx and the gateway are the two fronts, started from the same config.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509

from tests.support.certs import Certificates, encrypted_key
from tests.support.processes import Gateway, Nginx, free_port

pytestmark = pytest.mark.nginx

UPSTREAM = """
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    ssl_certificate {up.cert};
    ssl_certificate_key {up.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_verify_client on;
        ssl_client_certificate {ca};
        location / {{ return 200 "dn=$ssl_client_s_dn|$ssl_protocol\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{revoked_port} ssl;
        ssl_certificate {revoked.cert};
        ssl_certificate_key {revoked.key};
        location / {{ return 200 "revoked|$ssl_protocol\\n"; }}
    }}
}}
"""

# One upstream block per case: nginx keeps a TLS session per peer of an upstream
# (proxy_ssl_session_reuse) and a resumed session would skip what is compared here.
CASES = ("cert", "locked", "nocert", "wrongcert", "tls13", "ciphers", "crl_ok", "revoked",
         "strict_cert", "strict_nocert", "strict_wrongcert")

PROXY = """
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    # nginx 1.22 stops at TLS 1.2 by default, the gateway (as nginx 1.27.3) goes to TLS 1.3:
    # said here so that both speak the same version.
    proxy_ssl_protocols TLSv1.2;
{upstreams}
    proxy_ssl_certificate_key {client.key};
    server {{
        listen 127.0.0.1:{port};
        location /cert/ {{ proxy_pass https://cert/; {pair} }}
        location /strict_cert/ {{ proxy_pass https://strict_cert/; {pair} }}
        location /strict_nocert/ {{ proxy_pass https://strict_nocert/; }}
        location /strict_wrongcert/ {{
            proxy_pass https://strict_wrongcert/;
            proxy_ssl_certificate {stranger.cert};
            proxy_ssl_certificate_key {stranger.key};
        }}
        location /locked/ {{
            proxy_pass https://locked/;
            proxy_ssl_certificate {client.cert};
            proxy_ssl_certificate_key {locked};
            proxy_ssl_password_file {passwords};
        }}
        location /nocert/ {{ proxy_pass https://nocert/; }}
        location /wrongcert/ {{
            proxy_pass https://wrongcert/;
            proxy_ssl_certificate {stranger.cert};
            proxy_ssl_certificate_key {stranger.key};
        }}
        location /tls13/ {{ proxy_pass https://tls13/; {pair} proxy_ssl_protocols TLSv1.3; }}
        location /ciphers/ {{
            proxy_pass https://ciphers/; {pair}
            proxy_ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;    # the upstream's key is RSA
        }}
        location /crl_ok/ {{
            proxy_pass https://crl_ok/; {pair}
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_name up.test;
            proxy_ssl_crl {crl};
        }}
        location /revoked/ {{
            proxy_pass https://revoked/;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_name up.test;
            proxy_ssl_crl {crl};
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The test CA's upstream, revoked and client pairs, a stranger CA's pair, the CRL."""
    certs = Certificates(tmp_path_factory.mktemp("certs"))
    certs.up = certs.issue("up", "up.test")
    certs.revoked = certs.issue("revoked", "up.test")
    certs.client = certs.issue("client", "client.test")
    certs.locked = encrypted_key(certs.client, str(certs.dir / "locked.key"), b"s3cret")
    certs.passwords = certs.dir / "passwords"
    certs.passwords.write_text("not-this-one\ns3cret\n")
    certs.crl_file = certs.crl(str(certs.dir / "ca.crl"), certs.revoked)
    certs.stranger = Certificates(tmp_path_factory.mktemp("stranger-ca")).issue("x", "x.test")
    # $ssl_client_s_dn is RFC 2253's order, as rfc4514_string writes it.
    certs.client_dn = x509.load_der_x509_certificate(certs.client.der).subject.rfc4514_string()
    return certs


@pytest.fixture(scope="module")
def fronts(tmp_path_factory, pki):
    up, revoked, client = pki.up, pki.revoked, pki.client
    up_port, revoked_port = free_port(), free_port()
    tmp = tmp_path_factory.mktemp("upstream")
    upstream = Nginx(tmp, UPSTREAM.format(dir=tmp, port=up_port, revoked_port=revoked_port,
                                          up=up, revoked=revoked, ca=pki.ca_file), up_port)
    strict = StrictUpstream(pki)
    ports = {"revoked": revoked_port, "strict_cert": strict.port, "strict_nocert": strict.port,
             "strict_wrongcert": strict.port}
    upstreams = "".join(f"    upstream {name} {{ server 127.0.0.1:{ports.get(name, up_port)}; }}\n"
                        for name in CASES)
    started = {}
    try:
        for name, kind in (("gateway", Gateway), ("nginx", Nginx)):
            tmp = tmp_path_factory.mktemp(f"{name}-front")
            port = free_port()
            # The key is inherited from http; a location without proxy_ssl_certificate
            # (/nocert/, /revoked/) presents none.
            config = PROXY.format(dir=tmp, port=port, upstreams=upstreams, client=client,
                                  pair=f"proxy_ssl_certificate {client.cert};",
                                  locked=pki.locked, passwords=pki.passwords, ca=pki.ca_file,
                                  crl=pki.crl_file, stranger=pki.stranger)
            started[name] = (kind(tmp, config, port), port, tmp)
        yield started
    finally:
        for process, _, _ in started.values():
            process.stop()
        upstream.stop()
        strict.stop()


class StrictUpstream:
    """A Python TLS server that refuses the handshake without a certificate from the test CA
    (nginx's ssl_verify_client answers 400 after it instead), then answers 200 "ok"."""

    def __init__(self, pki):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.up.cert, pki.up.key)
        self.context.load_verify_locations(pki.ca_file)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            except (OSError, ssl.SSLError):
                conn.close()

    def stop(self):
        self.listener.close()


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def both(fronts, path):
    return {name: get(port, path) for name, (_, port, _) in fronts.items()}


def error_line(front, needle: str) -> str:
    """The front's error-log line with ``needle`` (waited for: nginx logs after answering)."""
    _, _, tmp = front
    deadline = time.monotonic() + 5
    while True:
        log = (tmp / "error.log").read_text() if (tmp / "error.log").exists() else ""
        for line in log.splitlines():
            if needle in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no {needle!r} in {log}")
        time.sleep(0.05)


def test_the_client_certificate_reaches_the_upstream(fronts, pki):
    seen = both(fronts, "/cert/x")
    assert seen["gateway"] == seen["nginx"] == (200, f"dn={pki.client_dn}|TLSv1.2\n")


def test_an_encrypted_key_is_opened_with_the_password_file(fronts):
    seen = both(fronts, "/locked/x")
    assert seen["gateway"] == seen["nginx"] == both(fronts, "/cert/x")["nginx"]


@pytest.mark.parametrize("path", ["/nocert/x", "/wrongcert/x"])
def test_a_missing_or_unknown_certificate_is_the_upstreams_answer(fronts, path):
    # nginx's ssl_verify_client finishes the handshake and answers 400 itself.
    seen = both(fronts, path)
    assert seen["gateway"][0] == seen["nginx"][0] == 400
    assert seen["gateway"][1] == seen["nginx"][1]


def test_an_upstream_refusing_the_handshake_is_a_502(fronts):
    assert both(fronts, "/strict_cert/x") == {"gateway": (200, "ok\n"), "nginx": (200, "ok\n")}
    for path in ("/strict_nocert/x", "/strict_wrongcert/x"):
        seen = both(fronts, path)
        assert seen["gateway"][0] == seen["nginx"][0] == 502, path
    pattern = re.compile(r"\[error\] .*\*\d+ SSL_do_handshake\(\) failed \(SSL: .*alert.*\) "
                         r'while SSL handshaking to upstream, .*upstream: "https://')
    for name in ("gateway", "nginx"):
        assert pattern.search(error_line(fronts[name], "strict_nocert")), name


def test_proxy_ssl_protocols_reach_tls13(fronts):
    seen = both(fronts, "/tls13/x")
    assert seen["gateway"] == seen["nginx"]
    assert seen["nginx"][0] == 200 and seen["nginx"][1].rstrip().endswith("|TLSv1.3")


def test_no_shared_cipher_is_a_502_logged_as_nginx_does(fronts):
    seen = both(fronts, "/ciphers/x")
    assert seen["gateway"][0] == seen["nginx"][0] == 502
    pattern = re.compile(r"\[error\] .*\*\d+ SSL_do_handshake\(\) failed \(SSL: .*"
                         r"handshake failure.*\) while SSL handshaking to upstream, client: ")
    for name in ("gateway", "nginx"):
        assert pattern.search(error_line(fronts[name], "GET /ciphers/x")), name


def test_the_crl_lets_a_good_certificate_through(fronts):
    seen = both(fronts, "/crl_ok/x")
    assert seen["gateway"] == seen["nginx"]
    assert seen["nginx"][0] == 200


def test_a_revoked_upstream_certificate_is_a_502(fronts):
    seen = both(fronts, "/revoked/x")
    assert seen["gateway"][0] == seen["nginx"][0] == 502
    ours, theirs = (error_line(fronts[name], "certificate verify error") for name in
                    ("gateway", "nginx"))
    words = "upstream SSL certificate verify error: (23:certificate revoked) " \
            "while SSL handshaking to upstream"
    assert words in ours and words in theirs
