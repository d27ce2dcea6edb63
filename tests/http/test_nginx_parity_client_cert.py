"""Client certificates side by side with real nginx: ssl_verify_client on, optional and
optional_no_ca; clients with no certificate, one the CA issued, one a foreign CA issued;
the same status and body (the $ssl_client_* values, or nginx's 400 pages for its codes
495 and 496), over HTTP/1.1 and HTTP/2, and per server chosen by SNI."""

import re
import socket
import ssl
import subprocess

import pytest
import trustme

from tests.support.processes import SIDE_BY_SIDE_HEAD, free_port

pytestmark = pytest.mark.nginx

VALUES = ("$ssl_client_verify|$ssl_client_s_dn|$ssl_client_i_dn|$ssl_client_serial|"
          "$ssl_client_fingerprint|$ssl_client_v_start|$ssl_client_v_end|$ssl_client_v_remain")
MODES = ("on", "optional", "optional_no_ca")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("client-certs")
    ca = trustme.CA(organization_name="Parity CA")
    foreign = trustme.CA(organization_name="Foreign CA")
    made = {"dir": folder, "ca": ca}
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    for name, hosts in (("server", ("a.test", "b.test", "localhost")),):
        leaf = ca.issue_cert(*hosts)
        leaf.cert_chain_pems[0].write_to_path(str(folder / f"{name}.crt"))
        leaf.private_key_pem.write_to_path(str(folder / f"{name}.key"))
    # A subject with characters RFC 2253 escapes, and an e-mail name (OpenSSL's short names).
    for name, issuer in (("good", ca), ("foreign", foreign)):
        leaf = issuer.issue_cert("client@example.test", common_name='Jo, "the" Client+1',
                                 organization_name="Example Org",
                                 organization_unit_name="Unit")
        path = folder / f"{name}.pem"
        path.write_bytes(leaf.private_key_pem.bytes() + leaf.cert_chain_pems[0].bytes())
        made[name] = str(path)
    return made


def config(certs, ports):
    d = certs["dir"]
    servers = "".join(f"""
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name a.test;
        ssl_verify_client {mode};
        location / {{ return 200 "{VALUES}\\n"; }}
        location /cert {{ return 200 "[$ssl_client_cert]\\n"; }}
        location /raw {{ return 200 "[$ssl_client_raw_cert]\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        server_name b.test;
        location / {{ return 200 "b $ssl_client_verify\\n"; }}
    }}""" for mode, port in zip(MODES, ports))
    return (SIDE_BY_SIDE_HEAD + f"""
http {{
    ssl_certificate {d}/server.crt;
    ssl_certificate_key {d}/server.key;
    ssl_client_certificate {d}/ca.pem;
    server {{
        listen 127.0.0.1:{ports[-1]};
        location / {{ return 200 "plain [$ssl_client_verify]\\n"; }}
    }}{servers}
}}
""")


@pytest.fixture(scope="module")
def both(certs, tmp_path_factory):
    from tests.support.processes import Gateway, Nginx
    started, ports = {}, {}
    try:
        for name, kind in (("nginx", Nginx), ("gateway", Gateway)):
            ports[name] = [free_port() for _ in range(len(MODES) + 1)]
            started[name] = kind(tmp_path_factory.mktemp(name), config(certs, ports[name]),
                                 ports[name][0])
        yield ports
    finally:
        for server in started.values():
            server.stop()


def request(port, cert=None, path="/", sni="a.test", host="a.test"):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                         .encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), _same_signature(body.decode())


def _same_signature(body):
    return re.sub(r"<hr><center>[^<]*</center>", "<hr><center>SERVER</center>", body)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("client", [None, "good", "foreign"])
def test_verify_modes_like_nginx(both, certs, mode, client):
    cert = certs[client] if client else None
    index = MODES.index(mode)
    answers = {name: request(ports[index], cert) for name, ports in both.items()}
    assert answers["gateway"] == answers["nginx"]
    status, body = answers["nginx"]
    if client == "good":
        assert status == 200 and body.startswith("SUCCESS|")
    elif client == "foreign":
        assert status == (200 if mode == "optional_no_ca" else 400)
    else:
        assert status == (400 if mode == "on" else 200)


@pytest.mark.parametrize("path", ["/cert", "/raw"])
def test_certificate_pem_like_nginx(both, certs, path):
    answers = {name: request(ports[1], certs["good"], path) for name, ports in both.items()}
    assert answers["gateway"] == answers["nginx"]
    assert "-----BEGIN CERTIFICATE-----" in answers["nginx"][1]


def test_plain_http_has_empty_values(both):
    answers = {}
    for name, ports in both.items():
        with socket.create_connection(("127.0.0.1", ports[-1]), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answers[name] = sock.recv(65536).partition(b"\r\n\r\n")[2]
    assert answers["gateway"] == answers["nginx"] == b"plain []\n"


@pytest.mark.parametrize("client", [None, "good"])
def test_server_chosen_by_sni_has_its_own_setting(both, certs, client):
    # b.test has ssl_verify_client off: no certificate is even asked for there.
    cert = certs[client] if client else None
    answers = {name: request(ports[0], cert, sni="b.test", host="b.test")
               for name, ports in both.items()}
    assert answers["gateway"] == answers["nginx"] == (200, "b NONE\n")


@pytest.mark.parametrize("client", [None, "good", "foreign"])
def test_http2_like_nginx(both, certs, client):
    answers = {}
    for name, ports in both.items():
        command = ["curl", "-sk", "--http2", "-o", "-", "-w", "\n%{http_code} %{http_version}",
                   "--resolve", f"a.test:{ports[0]}:127.0.0.1", f"https://a.test:{ports[0]}/"]
        if client:
            command[1:1] = ["--cert", certs[client]]
        out = subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
        answers[name] = _same_signature(out)
    assert answers["gateway"] == answers["nginx"]
    assert answers["nginx"].endswith(" 2")
