"""realip side by side with real nginx: the same $remote_addr, $remote_port and $realip_remote_addr
for the same headers, from a trusted and an untrusted connection, at server and location level."""

import socket

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

# nginx's workers read the files under pytest's folder, which only root may enter.
CONFIG = """
user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        set_real_ip_from 127.0.0.0/8;
        set_real_ip_from 10.0.0.0/8;
        set_real_ip_from 2001:db8::/32;
        real_ip_header X-Forwarded-For;
        location / {{ return 200 "$remote_addr|$remote_port|$realip_remote_addr\\n"; }}
        location /flat/ {{
            real_ip_recursive off;
            return 200 "$remote_addr|$remote_port|$realip_remote_addr\\n";
        }}
        location /recursive/ {{
            real_ip_recursive on;
            return 200 "$remote_addr|$remote_port|$realip_remote_addr\\n";
        }}
        location /real/ {{
            real_ip_header X-Real-IP;
            return 200 "$remote_addr|$remote_port|$realip_remote_addr\\n";
        }}
        location /files/ {{
            # The location's settings count from nginx's preaccess phase on: for content such as
            # files, not for a `return`, which answers earlier (the /real/ case above).
            real_ip_header X-Real-IP;
            root {root};
            add_header X-Client "$remote_addr|$remote_port|$realip_remote_addr";
        }}
        location /untrusted/ {{
            set_real_ip_from 192.0.2.1;
            return 200 "$remote_addr|$remote_port|$realip_remote_addr\\n";
        }}
    }}
}}
"""

CASES = [
    ("/", {"X-Forwarded-For": "203.0.113.7"}),
    ("/", {"X-Forwarded-For": "203.0.113.7, 10.1.2.3"}),
    ("/", {"X-Forwarded-For": "not an address"}),
    ("/", {}),
    ("/flat/", {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}),
    ("/recursive/", {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.2.3"}),
    ("/recursive/", {"X-Forwarded-For": "10.9.9.9, 127.0.0.5"}),
    ("/recursive/", {"X-Forwarded-For": "2001:db8::5, 2001:db9::1, 10.0.0.1"}),
    ("/real/", {"X-Real-IP": "198.51.100.9"}),
    ("/real/", {"X-Real-IP": "198.51.100.9", "X-Forwarded-For": "203.0.113.7"}),
    ("/untrusted/", {"X-Forwarded-For": "203.0.113.7"}),
    ("/files/a.txt", {"X-Real-IP": "198.51.100.9"}),
    ("/files/a.txt", {"X-Real-IP": "198.51.100.9", "X-Forwarded-For": "203.0.113.7"}),
]


def fetch(port, path, headers):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{lines}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    client = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-client:")]
    text = client[0].split(b":", 1)[1] if client else body
    addr, port_text, real = text.decode().strip().split("|")
    # The connection's own port differs between the two servers' clients: only say whether it is there.
    return head.split(b" ")[1], addr, bool(port_text), real


def test_realip_matches_nginx(start_gateway, start_nginx, tmp_path):
    root = tmp_path / "site"
    (root / "files").mkdir(parents=True)
    (root / "files" / "a.txt").write_text("a\n")
    answers = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        start(CONFIG.format(port=port, root=root), port)
        answers[name] = [fetch(port, path, headers) for path, headers in CASES]
    assert answers["gateway"] == answers["nginx"]
    # And they say what realip is for: the client behind the trusted proxy.
    assert answers["nginx"][0] == (b"200", "203.0.113.7", False, "127.0.0.1")
    assert answers["nginx"][1][1] == "10.1.2.3"            # without recursion: the last address
    assert answers["nginx"][11][1] == "198.51.100.9"       # the location's header, for a file
