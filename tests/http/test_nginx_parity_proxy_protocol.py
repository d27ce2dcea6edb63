"""`listen ... proxy_protocol` side by side with real nginx: the same $proxy_protocol_* variables and
realip results for the same v1 and v2 headers, the same connections closed for broken or missing
ones, and HAProxy's send-proxy and send-proxy-v2 as real senders in front of both."""

import socket
import struct

import pytest

from gateway.http.proxy_protocol import SIGNATURE
from tests.support.processes import SIDE_BY_SIDE_HEAD, Haproxy, free_port

pytestmark = pytest.mark.nginx

VARIABLES = ("$remote_addr|$remote_port|$realip_remote_addr|$proxy_protocol_addr|"
             "$proxy_protocol_port|$proxy_protocol_server_addr|$proxy_protocol_server_port")

CONFIG = SIDE_BY_SIDE_HEAD.replace("{", "{{").replace("}", "}}") + """
http {{
    access_log off;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        location / {{ return 200 "{variables}\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{realip_port} proxy_protocol;
        set_real_ip_from 127.0.0.0/8;
        real_ip_header proxy_protocol;
        location / {{ return 200 "{variables}\\n"; }}
    }}
    server {{
        # Not a proxy_protocol socket: the variables are empty and realip leaves the address.
        listen 127.0.0.1:{plain_port};
        set_real_ip_from 127.0.0.0/8;
        real_ip_header proxy_protocol;
        location / {{ return 200 "{variables}\\n"; }}
    }}
}}
"""


def v2(command=1, family=1, addresses=b"", tlvs=b"", version=2):
    body = addresses + tlvs
    return SIGNATURE + bytes([version << 4 | command, family << 4 | 1]) + \
        struct.pack("!H", len(body)) + body


def inet(kind, src, dst, sport, dport):
    return socket.inet_pton(kind, src) + socket.inet_pton(kind, dst) + struct.pack("!HH", sport, dport)


HEADERS = [
    b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
    b"PROXY TCP6 2001:db8::1 2001:db8::2 1 0\r\n",
    b"PROXY TCP4 ::ffff:10.0.0.1 198.51.100.2 56324 443\r\n",
    b"PROXY TCP4 abc 198.51.100.2 056324 0443\r\n",          # not an address: realip keeps its own
    b"PROXY TCP4 192.0.2.1 198.51.100.2 0 443\r\n",
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN 1.2.3.4 junk\r\n",
    v2(addresses=inet(socket.AF_INET, "192.0.2.9", "198.51.100.3", 4000, 8443)),
    v2(addresses=inet(socket.AF_INET, "192.0.2.9", "198.51.100.3", 4000, 8443),
       tlvs=b"\x04\x00\x04abcd"),
    v2(family=2, addresses=inet(socket.AF_INET6, "::ffff:1.2.3.4", "2001:db8::2", 4000, 8443)),
    v2(command=0),
    # Refused: the connection is closed without an answer.
    b"",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
    b"PROXY TCP5 192.0.2.1 198.51.100.2 1 443\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
    v2(version=1, addresses=inet(socket.AF_INET, "192.0.2.9", "198.51.100.3", 1, 2)),
    v2(addresses=inet(socket.AF_INET, "192.0.2.9", "198.51.100.3", 1, 2)[:8]),
]


def ask(port, header, request=b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
    """The answer's fields, the connection's own port replaced by whether it is there."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(header + request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        return "closed"
    fields = data.partition(b"\r\n\r\n")[2].decode().strip().split("|")
    fields[1] = bool(fields[1]) if fields[0] == "127.0.0.1" else fields[1]
    return fields


def test_proxy_protocol_matches_nginx(start_gateway, start_nginx):
    answers = {}
    logs = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port, realip_port, plain_port = free_port(), free_port(), free_port()
        server = start(CONFIG.format(port=port, realip_port=realip_port, plain_port=plain_port,
                                     variables=VARIABLES), port)
        answers[name] = [(ask(port, h), ask(realip_port, h)) for h in HEADERS]
        answers[name].append(ask(plain_port, b""))
        logs[name] = (server.dir / "error.log").read_text()
    assert answers["gateway"] == answers["nginx"]
    nginx = answers["nginx"]
    assert nginx[0][0] == ["127.0.0.1", True, "127.0.0.1", "192.0.2.1", "56324", "198.51.100.2", "443"]
    assert nginx[0][1][:2] == ["192.0.2.1", "56324"]        # realip: the address and port sent
    assert nginx[2][1][0] == "::ffff:10.0.0.1"
    assert nginx[11] == ("closed", "closed")                 # a plain request: no header
    assert nginx[-1] == ["127.0.0.1", True, "127.0.0.1", "", "", "", ""]
    for line in ('broken header: "GET / HTTP/1.1', "unknown PROXY protocol version: 1",
                 "while reading PROXY protocol, client: 127.0.0.1, server: 127.0.0.1:"):
        assert line in logs["nginx"] and line in logs["gateway"]


def test_requests_after_the_header_keep_alive(start_gateway):
    port = free_port()
    start_gateway(CONFIG.format(port=port, realip_port=free_port(), plain_port=free_port(),
                                variables=VARIABLES), port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        # The header and two pipelined requests in one write: all three read from it.
        sock.sendall(b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n"
                     + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        data = b""
        while data.count(b"192.0.2.1") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2


HAPROXY = """
global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:{v1}
    default_backend v1
frontend v2
    bind 127.0.0.1:{v2}
    default_backend v2
backend v1
    server s 127.0.0.1:{target} send-proxy
backend v2
    server s 127.0.0.1:{target} send-proxy-v2
"""


def test_haproxy_as_the_sender(start_gateway, start_nginx, tmp_path):
    answers = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port, realip_port = free_port(), free_port()
        start(CONFIG.format(port=port, realip_port=realip_port, plain_port=free_port(),
                            variables=VARIABLES), port)
        v1_port, v2_port = free_port(), free_port()
        folder = tmp_path / f"haproxy-{name}"
        folder.mkdir()
        haproxy = Haproxy(folder, HAPROXY.format(v1=v1_port, v2=v2_port, target=realip_port), v1_port)
        try:
            answers[name] = []
            for front in (v1_port, v2_port):
                with socket.create_connection(("127.0.0.1", front), timeout=10) as sock:
                    own_port = sock.getsockname()[1]
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
                fields = data.partition(b"\r\n\r\n")[2].decode().strip().split("|")
                # realip: the client's own address and port, as HAProxy saw them.
                assert fields[:2] == ["127.0.0.1", str(own_port)]
                assert fields[4] == str(own_port)
                assert fields[5:] == ["127.0.0.1", str(front)]
                answers[name].append([fields[0], fields[3], fields[5]])
        finally:
            haproxy.stop()
    assert answers["gateway"] == answers["nginx"]


STALL_CONFIG = SIDE_BY_SIDE_HEAD + """
http {
    access_log off;
    server {
        listen 127.0.0.1:%d proxy_protocol;
        client_header_timeout 1s;
        location / { return 200 "$proxy_protocol_addr\\n"; }
    }
}
"""


@pytest.mark.parametrize("sent", [b"", b"PROXY TCP4 192.0.2.1 "])
def test_a_header_that_never_comes_is_cut_by_client_header_timeout(start_gateway, start_nginx,
                                                                   sent):
    for start in (start_nginx, start_gateway):
        port = free_port()
        start(STALL_CONFIG % port, port)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(sent)
            assert sock.recv(100) == b""      # closed without an answer (not our 20 s timeout)
