"""ssl_* directives and ``listen ... ssl``: merging, contexts, and nginx's error wording."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import sys

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.support.certs import Certificates

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    made = Certificates(tmp_path_factory.mktemp("certs"))
    made.rsa = made.issue("rsa", "a.test", via_intermediate=True)
    made.ec = made.issue("ec", "a.test", ecdsa=True)
    made.other = made.issue("other", "b.test")
    return made


def server(cfg, i=0):
    return cfg.http.servers[i]


def test_http_level_pairs_are_inherited_and_a_server_level_list_replaces_them(conf, certs):
    cfg = conf.load(f"""http {{
 ssl_certificate {certs.rsa.cert};
 ssl_certificate_key {certs.rsa.key};
 ssl_certificate {certs.ec.cert};
 ssl_certificate_key {certs.ec.key};
 server {{ listen 127.0.0.1:1 ssl default_server; server_name a.test; }}
 server {{ listen 127.0.0.1:1; server_name b.test;
          ssl_certificate {certs.other.cert}; ssl_certificate_key {certs.other.key}; }}
}}
""")
    a, b = server(cfg), server(cfg, 1)
    assert [(c.cert, c.key) for c in a.tls.certificates] == [
        (certs.rsa.cert, certs.rsa.key), (certs.ec.cert, certs.ec.key)]
    assert [c.cert for c in b.tls.certificates] == [certs.other.cert]
    assert isinstance(a.tls.context, ssl.SSLContext) and a.tls.context is not b.tls.context
    # "ssl" on one listen makes the socket TLS for every server on it, as in nginx.
    assert a.listens[0].ssl and b.listens[0].ssl
    assert set(cfg.http.tls_listens) == {("127.0.0.1", 1)}


def test_settings_and_defaults(conf, certs):
    cfg = conf.load(f"""http {{
 ssl_certificate {certs.rsa.cert};
 ssl_certificate_key {certs.rsa.key};
 ssl_protocols TLSv1.3;
 ssl_session_cache shared:SSL:10m;
 server {{ listen 127.0.0.1:1 ssl; ssl_ciphers ECDHE-RSA-AES128-GCM-SHA256;
          ssl_prefer_server_ciphers on; ssl_session_tickets off; }}
 server {{ listen 127.0.0.1:2; }}
}}
""")
    a, plain = server(cfg).tls, server(cfg, 1).tls
    assert a.protocols == ("TLSv1.3",) and a.session_cache == "shared:SSL:10m"
    assert a.ciphers == "ECDHE-RSA-AES128-GCM-SHA256" and a.prefer_server_ciphers
    assert a.context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert a.context.options & ssl.OP_NO_TICKET
    assert a.context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    # The second server inherits the http level; nothing of the first server leaks into it.
    assert plain.protocols == ("TLSv1.3",) and plain.ciphers == "HIGH:!aNULL:!MD5"
    assert not plain.context.options & ssl.OP_NO_TICKET
    assert not plain.context.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert not server(cfg, 1).listens[0].ssl


def test_default_protocols_are_tls12_and_tls13(conf):
    cfg = conf.load("http { server { listen 127.0.0.1:1; } }\n")
    assert server(cfg).tls.protocols == ("TLSv1.2", "TLSv1.3")
    assert server(cfg).tls.context is None and cfg.http.tls_listens == {}


def test_protocol_gaps_are_closed(conf, certs):
    cfg = conf.load(f"http {{ ssl_certificate {certs.rsa.cert}; ssl_certificate_key "
                    f"{certs.rsa.key}; ssl_protocols TLSv1 TLSv1.3; server {{ }} }}\n")
    ctx = server(cfg).tls.context
    assert (ctx.minimum_version, ctx.maximum_version) == (ssl.TLSVersion.TLSv1,
                                                          ssl.TLSVersion.TLSv1_3)
    assert ctx.options & ssl.OP_NO_TLSv1_1 and ctx.options & ssl.OP_NO_TLSv1_2


def test_relative_paths_are_relative_to_the_main_file(conf, certs):
    (conf.root / "tls").mkdir()
    shutil.copy(certs.rsa.cert, conf.root / "tls" / "site.crt")
    shutil.copy(certs.rsa.key, conf.root / "tls" / "site.key")
    cfg = conf.load("http { server { listen 127.0.0.1:1 ssl; ssl_certificate tls/site.crt; "
                    "ssl_certificate_key tls/site.key; } }\n")
    assert server(cfg).tls.certificates[0].cert == str(conf.root / "tls" / "site.crt")


def test_timeouts_and_curve_lists_that_cannot_be_honoured_warn(conf):
    cfg = conf.load("http {\n ssl_session_timeout 10m;\n ssl_ecdh_curve X25519:prime256v1;\n}\n")
    main = f"{conf.root}/main.conf"
    assert cfg.warnings == [
        f'"ssl_session_timeout" other than 5m is accepted but not acted on in {main}:5',
        f'"ssl_ecdh_curve" with several curves is accepted but not acted on in {main}:6']


def test_one_curve_is_applied(conf, certs):
    cfg = conf.load(f"http {{ ssl_certificate {certs.ec.cert}; ssl_certificate_key "
                    f"{certs.ec.key}; ssl_ecdh_curve prime256v1; server {{ }} }}\n")
    assert server(cfg).tls.ecdh_curve == "prime256v1"
    message = conf.error(f"http {{ ssl_certificate {certs.ec.cert}; ssl_certificate_key "
                         f"{certs.ec.key};\n ssl_ecdh_curve bogus; server {{ }} }}\n")
    assert message.startswith('SSL_CTX_set1_curves_list("bogus") failed')
    assert message.endswith("main.conf:5")


# nginx's messages: compared with what nginx itself prints for the same file -------------

def nginx_emerg(tmp_path, conf) -> str:
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", conf],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0, proc.stderr
    for line in proc.stderr.splitlines():
        m = re.search(r"\[emerg\] \d+#\d+: (.*)$", line)
        if m:
            return m.group(1)
    raise AssertionError(proc.stderr)


def _bad_cases(certs, tmp):
    missing = f"{tmp}/missing.pem"
    pair = f"ssl_certificate {certs.rsa.cert};\n  ssl_certificate_key {certs.rsa.key};"
    return {
        # name: (server body, line our message names, compare only the part before " (")
        "missing_cert": (f"ssl_certificate {missing};\n  ssl_certificate_key {certs.rsa.key};",
                         6, True),
        "missing_key": (f"ssl_certificate {certs.rsa.cert};\n  ssl_certificate_key {missing};",
                        7, True),
        "mismatch": (f"ssl_certificate {certs.rsa.cert};\n  ssl_certificate_key "
                     f"{certs.other.key};", 7, True),
        "key_as_cert": (f"ssl_certificate {certs.rsa.key};\n  ssl_certificate_key "
                        f"{certs.rsa.key};", 6, True),
        "cert_as_key": (f"ssl_certificate {certs.rsa.cert};\n  ssl_certificate_key "
                        f"{certs.rsa.cert};", 7, True),
        "no_key": (f"ssl_certificate {certs.rsa.cert};", 6, False),
        "no_certificate": ("", None, False),
        "bad_protocol": (f"{pair}\n  ssl_protocols TLSv1.2 TLSv1.5;", 8, False),
        "bad_cache": (f"{pair}\n  ssl_session_cache shared:X;", 8, False),
        "bad_ciphers": (f"{pair}\n  ssl_ciphers BOGUS;", 8, True),
        "missing_dhparam": (f"{pair}\n  ssl_dhparam {missing};", 8, True),
        "verify_without_ca": (f"{pair}\n  ssl_verify_client on;", None, False),
        "bad_verify_client": (f"{pair}\n  ssl_verify_client maybe;", 8, False),
        "bad_verify_depth": (f"{pair}\n  ssl_verify_depth x;", 8, False),
        "missing_client_ca": (f"{pair}\n  ssl_verify_client on;\n  ssl_client_certificate "
                              f"{missing};", None, True),
        "missing_trusted": (f"{pair}\n  ssl_trusted_certificate {missing};", None, True),
    }


@pytest.mark.nginx
@pytest.mark.parametrize("name", ["missing_cert", "missing_key", "mismatch", "key_as_cert",
                                  "cert_as_key", "no_key", "no_certificate", "bad_protocol",
                                  "bad_cache", "bad_ciphers", "missing_dhparam",
                                  "verify_without_ca", "bad_verify_client", "bad_verify_depth",
                                  "missing_client_ca", "missing_trusted"])
def test_same_message_as_nginx(tmp_path, certs, name):
    body, line, prefix_only = _bad_cases(certs, tmp_path)[name]
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{\n server {{\n  {body}\n  listen 127.0.0.1:1 ssl;\n }}\n}}\n")
    expected = nginx_emerg(tmp_path, str(conf))
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    ours = info.value
    if prefix_only:
        # OpenSSL's error codes after the call are nginx's detail; the call and file are ours too.
        assert ours.message.split(" (")[0] == expected.split(" (")[0]
    elif re.search(r" in \S+:\d+$", expected):
        assert str(ours) == expected
    else:
        assert ours.message == expected
    if line is not None:
        assert (ours.file, ours.line) == (str(conf), line)   # nginx names no place here
    assert "Traceback" not in str(ours)


def test_check_fails_with_the_place_and_no_traceback(tmp_path, certs):
    conf = tmp_path / "site.conf"
    conf.write_text(f"error_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n server {{\n"
                    f"  listen 127.0.0.1:1 ssl;\n  ssl_certificate {tmp_path}/gone.crt;\n"
                    f"  ssl_certificate_key {certs.rsa.key};\n }}\n}}\n")
    proc = subprocess.run([sys.executable, "-m", "gateway", "-t", "-p", str(tmp_path), "-c", str(conf)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert (f'[emerg] cannot load certificate "{tmp_path}/gone.crt": BIO_new_file() failed'
            in proc.stderr)
    assert f"in {conf}:6" in proc.stderr and "Traceback" not in proc.stderr
    assert f"configuration file {conf} test failed" in proc.stderr


@pytest.mark.nginx
@pytest.mark.parametrize("body,prefix_only", [
    ("proxy_ssl_verify on;", False),
    ("proxy_ssl_verify on;\n   proxy_ssl_trusted_certificate {tmp}/missing.pem;", True),
])
def test_upstream_tls_messages_like_nginx(tmp_path, body, prefix_only):
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    "http {\n server {\n  listen 127.0.0.1:1;\n  location / {\n"
                    f"   proxy_pass https://127.0.0.1:9;\n   {body.format(tmp=tmp_path)}\n"
                    "  }\n }\n}\n")
    expected = nginx_emerg(tmp_path, str(conf))
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    ours = info.value
    if prefix_only:
        assert ours.message.split(" (")[0] == expected.split(" (")[0]
    else:
        assert ours.message == expected
    assert (ours.file, ours.line) == (str(conf), 8)     # the proxy_pass: nginx names none


def test_https_upstream_settings(conf, certs):
    cfg = conf.load(f"""http {{
 proxy_ssl_trusted_certificate {certs.ca_file};
 server {{
  listen 127.0.0.1:1;
  location /a/ {{ proxy_pass https://127.0.0.1/; }}
  location /b/ {{ proxy_pass https://127.0.0.1:8443; proxy_ssl_verify on;
                 proxy_ssl_server_name on; proxy_ssl_name $host; }}
  location /c/ {{ proxy_pass http://127.0.0.1; }}
 }}
}}
""")
    a, b, c = (loc.settings.proxy_pass for loc in server(cfg).locations)
    assert a.ssl and cfg.http.upstreams[a.upstream].servers[0].port == 443
    assert a.tls.context.verify_mode == ssl.CERT_NONE and not a.tls.verify
    assert a.tls.name.text == "$proxy_host" and not a.tls.server_name
    assert b.tls.verify and b.tls.server_name and b.tls.name.text == "$host"
    assert b.tls.context.verify_mode == ssl.CERT_REQUIRED
    assert not c.ssl and c.tls is None


def test_certificate_name_matching():
    from gateway.http.tls import matches
    cert = {"subjectAltName": (("DNS", "*.a.test"), ("DNS", "b.test"),
                               ("IP Address", "127.0.0.1"))}
    assert matches(cert, "x.a.test") and matches(cert, "B.test") and matches(cert, "127.0.0.1")
    assert not matches(cert, "a.test") and not matches(cert, "y.x.a.test")
    assert not matches(cert, "c.test") and not matches(cert, "127.0.0.2")
    assert matches({"subject": ((("commonName", "c.test"),),)}, "c.test")
    assert not matches(None, "c.test")


# Each is either accepted by both or refused by both with the same message.
PARITY = r"""
http { ssl_protocols TLSv1.2; }
http { ssl_protocols SSLv2 SSLv3 TLSv1 TLSv1.1 TLSv1.2 TLSv1.3; }
http { ssl_protocols tls1.2; }
http { ssl_protocols TLSv1.2; ssl_protocols TLSv1.3; }
http { ssl_session_cache off; }
http { ssl_session_cache none; }
http { ssl_session_cache builtin; }
http { ssl_session_cache builtin:1000 shared:SSL:10m; }
http { ssl_session_cache builtin:x; }
http { ssl_session_cache shared:SSL; }
http { ssl_session_cache a b c; }
http { ssl_session_tickets maybe; }
http { ssl_prefer_server_ciphers on; ssl_session_tickets off; ssl_session_timeout 5m; }
http { ssl_session_timeout x; }
http { server { location / { ssl_ciphers HIGH; } } }
http { server { listen 127.0.0.1:1 ssl; } }
http { server { listen 127.0.0.1:1 ssl default_server; } server { listen 127.0.0.1:1; } }
http { server { location / { proxy_ssl_verify maybe; } } }
http { server { location / { proxy_ssl_server_name on; proxy_ssl_name $host; } } }
http { server { location / { proxy_pass https://127.0.0.1:8443; } } }
""".strip().splitlines()


@pytest.mark.nginx
@pytest.mark.parametrize("body", PARITY)
def test_accepted_or_refused_like_nginx(tmp_path, body):
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    + body + "\n")
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    try:
        load_config(str(conf), str(tmp_path))
    except ConfigError as exc:
        assert proc.returncode != 0, f"nginx accepts it, we say: {exc}"
        assert str(exc) == nginx_emerg(tmp_path, str(conf))
    else:
        assert proc.returncode == 0, proc.stderr


def test_repeated_ssl_protocols_add_up(conf):
    cfg = conf.load("http { ssl_protocols TLSv1.2; ssl_protocols TLSv1.3 TLSv1.2; server { } }\n")
    assert server(cfg).tls.protocols == ("TLSv1.2", "TLSv1.3")


def test_an_encrypted_key_is_an_error_not_a_prompt(tmp_path, certs):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(open(certs.rsa.key, "rb").read(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    conf = tmp_path / "site.conf"
    conf.write_text(f"error_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n server {{\n"
                    f"  listen 127.0.0.1:1 ssl;\n  ssl_certificate {certs.rsa.cert};\n"
                    f"  ssl_certificate_key {encrypted};\n }}\n}}\n")
    proc = subprocess.run([sys.executable, "-m", "gateway", "-t", "-p", str(tmp_path), "-c",
                           str(conf)], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1
    assert f'cannot load certificate key "{encrypted}": PEM_read_bio_PrivateKey() failed' \
        in proc.stderr
    assert f"in {conf}:7" in proc.stderr and "pass phrase" not in proc.stderr + proc.stdout
