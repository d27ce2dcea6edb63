"""allow/deny, auth_basic and satisfy side by side with real nginx: the same status, challenge
and body for client addresses (set by realip, so one loopback client can be any address),
credentials checked against htpasswd files in every form nginx reads, and error_page."""

import base64
import hashlib
import socket
import subprocess

import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

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
        root {root};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Real-IP;
        deny 203.0.113.0/24;
        location /v4/ {{ allow 192.0.2.0/24; deny 192.0.2.7; allow 198.51.100.1; deny all; }}
        location /v6/ {{ deny 2001:db8::1; allow 2001:db8::/32; deny all; }}
        location /inherit/ {{ }}
        location /only6/ {{ allow 2001:db8::/32; deny all; }}
        location /mapped/ {{ allow 192.0.2.0/24; deny all; }}
        location /return/ {{ deny all; return 200 "the rewrite phase runs first\\n"; }}
        location /page/ {{ deny all; error_page 403 /denied.txt; }}
        location = /denied.txt {{ allow all; }}
        location /auth/ {{ auth_basic "Restricted area"; auth_basic_user_file {htpasswd}; }}
        location /auth/open/ {{ auth_basic off; }}
        location /realm/ {{ auth_basic "for $http_x_who"; auth_basic_user_file {htpasswd}; }}
        location /nofile/ {{ auth_basic "x"; auth_basic_user_file {root}/missing; }}
        location /any/ {{
            satisfy any;
            allow 192.0.2.0/24; deny all;
            auth_basic "any"; auth_basic_user_file {htpasswd};
        }}
        location /all/ {{
            allow 192.0.2.0/24; deny all;
            auth_basic "all"; auth_basic_user_file {htpasswd};
        }}
        location /authpage/ {{
            auth_basic "paged"; auth_basic_user_file {htpasswd};
            error_page 401 /denied.txt;
        }}
    }}
}}
"""

PASSWORD = "s3cret pass"


def openssl_passwd(option):
    return subprocess.run(["openssl", "passwd", option, PASSWORD], capture_output=True, text=True,
                          check=True).stdout.strip()


def htpasswd(path):
    sha = base64.b64encode(hashlib.sha1(PASSWORD.encode()).digest()).decode()
    salt = b"NaCl4u"
    ssha = base64.b64encode(hashlib.sha1(PASSWORD.encode() + salt).digest() + salt).decode()
    path.write_text("\n".join([
        "# made by the test",
        f"apr:{openssl_passwd('-apr1')}",
        f"md5:{openssl_passwd('-1')}",
        f"sha256:{openssl_passwd('-5')}",
        f"sha512:{openssl_passwd('-6')}",
        f"sha:{{SHA}}{sha}",
        f"ssha:{{SSHA}}{ssha}",
        f"plain:{{PLAIN}}{PASSWORD}:a comment",
        "crlf:{PLAIN}x\r",
        "garbage:garbage",
        "bang:!x",
        "empty:",
        "badssha:{SSHA}!!!",
    ]) + "\n")


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


USERS = ("apr", "md5", "sha256", "sha512", "sha", "ssha", "plain")
CASES = (
    [("/v4/f.txt", {"X-Real-IP": ip}) for ip in
     ("192.0.2.7", "192.0.2.200", "198.51.100.1", "198.51.100.2", "203.0.113.9")]
    + [("/v6/f.txt", {"X-Real-IP": ip}) for ip in ("2001:db8::1", "2001:db8::2", "2001:db9::1")]
    + [("/inherit/f.txt", {"X-Real-IP": ip}) for ip in ("203.0.113.1", "192.0.2.1", "2001:db8::1")]
    + [("/only6/f.txt", {"X-Real-IP": "2001:db8::5"}), ("/only6/f.txt", {"X-Real-IP": "192.0.2.5"})]
    + [("/mapped/f.txt", {"X-Real-IP": ip}) for ip in ("::ffff:192.0.2.5", "::ffff:10.0.0.1")]
    + [("/return/", {}), ("/page/f.txt", {})]
    + [("/auth/f.txt", {"Authorization": basic(user, PASSWORD)}) for user in USERS]
    + [("/auth/f.txt", {"Authorization": basic(user, "wrong")}) for user in USERS]
    + [("/auth/f.txt", {"Authorization": value}) for value in (
        basic("nobody", PASSWORD), basic("crlf", "x"), "Basic", "Basic    ", "Bearer abc",
        "basic " + base64.b64encode(f"plain:{PASSWORD}".encode()).decode(), "Basic !!!!",
        "Basic " + base64.b64encode(b"nocolon").decode(), basic("", "x"), basic("#", "x"),
        basic("garbage", "garbage"), basic("bang", "!x"), basic("empty", ""), basic("badssha", "x"))]
    + [("/auth/f.txt", {}), ("/auth/open/f.txt", {}), ("/nofile/f.txt", {"Authorization": basic("apr", "x")})]
    + [("/realm/f.txt", {"X-Who": "friends"})]
    + [("/any/f.txt", {"X-Real-IP": "192.0.2.1"}), ("/any/f.txt", {"X-Real-IP": "10.1.1.1"}),
       ("/any/f.txt", {"X-Real-IP": "10.1.1.1", "Authorization": basic("sha", PASSWORD)}),
       ("/any/f.txt", {"X-Real-IP": "10.1.1.1", "Authorization": basic("sha", "no")})]
    + [("/all/f.txt", {"X-Real-IP": "192.0.2.1"}), ("/all/f.txt", {"X-Real-IP": "10.1.1.1"}),
       ("/all/f.txt", {"X-Real-IP": "192.0.2.1", "Authorization": basic("md5", PASSWORD)}),
       ("/all/f.txt", {"X-Real-IP": "10.1.1.1", "Authorization": basic("md5", PASSWORD)})]
    + [("/authpage/f.txt", {})]
)


def fetch(port, path, headers):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{lines}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    # Error pages name the server in their last lines: compare the title only.
    return int(lines[0].split()[1]), fields.get("www-authenticate"), body.split(b"</title>")[0]


def test_access_phase_matches_nginx(start_gateway, start_nginx, tmp_path):
    root = tmp_path / "site"
    for name in ("v4", "v6", "inherit", "only6", "mapped", "page", "auth/open", "auth", "realm",
                 "nofile", "any", "all", "authpage"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "f.txt").write_text("file\n")
    (root / "denied.txt").write_text("denied\n")
    users = tmp_path / "htpasswd"
    htpasswd(users)
    answers = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        start(CONFIG.format(port=port, root=root, htpasswd=users), port)
        answers[name] = [fetch(port, path, headers) for path, headers in CASES]
    for case, got, want in zip(CASES, answers["gateway"], answers["nginx"]):
        assert got == want, case
    statuses = [status for status, _, _ in answers["nginx"]]
    # What the modules are for: the first rule that matches decides, every password form works.
    assert statuses[:5] == [200, 200, 200, 403, 403]
    first_auth = CASES.index(("/auth/f.txt", {"Authorization": basic("apr", PASSWORD)}))
    assert statuses[first_auth:first_auth + 2 * len(USERS)] == [200] * len(USERS) + [401] * len(USERS)
    assert answers["nginx"][first_auth + len(USERS)][1] == 'Basic realm="Restricted area"'
