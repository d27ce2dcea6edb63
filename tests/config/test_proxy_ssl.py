"""proxy_ssl_* for the upstream context: settings, inheritance, and nginx -t's words."""

from __future__ import annotations

import ssl
import subprocess

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.config.test_nginx_wording import NGINX, nginx_message
from tests.support.certs import Certificates, encrypted_key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    made = Certificates(tmp_path_factory.mktemp("certs"))
    made.client = made.issue("client", "client.test")
    made.locked = encrypted_key(made.client, str(made.dir / "locked.key"), b"right")
    made.passwords = str(made.dir / "passwords")
    (made.dir / "passwords").write_text("wrong\r\n\nright\n")
    made.crl_file = made.crl(str(made.dir / "ca.crl"))
    return made


def write(tmp_path, location: str, http: str = "") -> str:
    """main.conf with one proxying location; its proxy_pass is on line 8."""
    conf = tmp_path / "main.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{ {http}\n server {{\n  listen 127.0.0.1:1;\n  location / {{\n"
                    f"   proxy_pass https://127.0.0.1:9;\n   {location}\n  }}\n }}\n}}\n")
    return str(conf)


def contexts(cfg):
    return [loc.settings.proxy_pass.tls.context for loc in cfg.http.servers[0].locations]


def test_client_certificate_protocols_and_ciphers(tmp_path, certs):
    cfg = load_config(write(
        tmp_path, "proxy_ssl_protocols TLSv1.3;",
        f"proxy_ssl_certificate {certs.client.cert}; proxy_ssl_certificate_key "
        f"{certs.locked}; proxy_ssl_password_file {certs.passwords}; "
        "proxy_ssl_ciphers HIGH:!aNULL; proxy_ssl_verify on; "
        f"proxy_ssl_trusted_certificate {certs.ca_file}; proxy_ssl_crl {certs.crl_file};"),
        str(tmp_path))
    (ctx,) = contexts(cfg)
    assert ctx.minimum_version == ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_flags & ssl.VERIFY_CRL_CHECK_CHAIN == ssl.VERIFY_CRL_CHECK_CHAIN
    assert ctx.cert_store_stats()["crl"] == 1
    assert all("NULL" not in c["name"] for c in ctx.get_ciphers())


def test_defaults(tmp_path):
    (ctx,) = contexts(load_config(write(tmp_path, ""), str(tmp_path)))
    # TLSv1.2 TLSv1.3 (nginx 1.27.3's default, as for ssl_protocols), "DEFAULT" ciphers, no CRL.
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.cert_store_stats()["crl"] == 0
    assert not ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


def test_a_crl_is_read_only_with_verify(tmp_path):
    # nginx's ngx_http_proxy_set_ssl calls ngx_ssl_crl inside "if (ssl_verify)".
    (ctx,) = contexts(load_config(write(tmp_path, f"proxy_ssl_crl {tmp_path}/none.crl;"),
                                  str(tmp_path)))
    assert not ctx.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF


def test_each_setting_is_inherited_on_its_own(conf, certs):
    cfg = conf.load(f"""http {{
 proxy_ssl_certificate {certs.client.cert};
 proxy_ssl_certificate_key {certs.client.key};
 proxy_ssl_protocols TLSv1.2;
 server {{
  listen 127.0.0.1:1;
  proxy_ssl_protocols TLSv1.3;
  location /a/ {{ proxy_pass https://127.0.0.1:9; }}
  location /b/ {{ proxy_pass https://127.0.0.1:9; proxy_ssl_protocols TLSv1.2 TLSv1.3; }}
  location /c/ {{ proxy_pass https://127.0.0.1:9; proxy_ssl_protocols TLSv1.3; }}
 }}
}}
""")
    a, b, c = contexts(cfg)
    assert a is c                       # equal settings share one context
    assert a.minimum_version == ssl.TLSVersion.TLSv1_3
    assert b.minimum_version == ssl.TLSVersion.TLSv1_2
    assert b.maximum_version == ssl.TLSVersion.TLSv1_3
    settings = cfg.http.servers[0].locations[0].settings
    assert settings.proxy_ssl_certificate == certs.client.cert


def test_verify_depth_and_conf_command_warn(conf):
    cfg = conf.load("http {\n proxy_ssl_verify_depth 3;\n"
                    " proxy_ssl_conf_command Options -SessionTicket;\n}\n")
    main = f"{conf.root}/main.conf"
    assert cfg.warnings == [
        f'"proxy_ssl_verify_depth" directive is accepted but not acted on in {main}:5',
        f'"proxy_ssl_conf_command" directive is accepted but not acted on in {main}:6']


def test_variables_in_the_certificate_are_refused(conf):
    message = conf.error("http {\n proxy_ssl_certificate $host.crt;\n}\n")
    assert message.startswith('"proxy_ssl_certificate" with variables is not supported')


# nginx's messages, compared with nginx -t on the same file ------------------------------

def _cases(certs, tmp):
    missing = f"{tmp}/missing.pem"
    pair = f"proxy_ssl_certificate {certs.client.cert}; proxy_ssl_certificate_key"
    return {
        # name: (location body, the line ours names, compare only the part before " (")
        "no_key": (f"proxy_ssl_certificate {certs.client.cert};", 8, False),
        "missing_certificate": (f"proxy_ssl_certificate {missing};\n"
                                f"   proxy_ssl_certificate_key {certs.client.key};", 8, True),
        "missing_key": (f"{pair} {missing};", 8, True),
        "encrypted_key_without_password": (f"{pair} {certs.locked};", 8, True),
        "wrong_passwords": (f"{pair} {certs.locked};\n"
                            f"   proxy_ssl_password_file {certs.client.cert};", 8, True),
        "missing_password_file": (f"proxy_ssl_password_file {missing};", 9, False),
        "duplicate_password_file": (f"proxy_ssl_password_file {certs.passwords};\n"
                                    f"   proxy_ssl_password_file {certs.passwords};", 10, False),
        "no_cipher_match": ("proxy_ssl_ciphers NOSUCH;", 8, True),
        "bad_protocol": ("proxy_ssl_protocols TLSv1.2 TLSv9;", 9, False),
        "verify_depth": ("proxy_ssl_verify_depth deep;", 9, False),
        "conf_command_arguments": ("proxy_ssl_conf_command Options;", 9, False),
        "duplicate_crl": ("proxy_ssl_crl a.crl; proxy_ssl_crl b.crl;", 9, False),
        "missing_crl": (f"proxy_ssl_verify on; proxy_ssl_trusted_certificate {certs.ca_file};"
                        f" proxy_ssl_crl {missing};", 8, True),
    }


CASE_NAMES = ["no_key", "missing_certificate", "missing_key", "encrypted_key_without_password",
              "wrong_passwords", "missing_password_file", "duplicate_password_file",
              "no_cipher_match", "bad_protocol", "verify_depth", "conf_command_arguments",
              "duplicate_crl", "missing_crl"]


@pytest.mark.nginx
@pytest.mark.parametrize("name", CASE_NAMES)
def test_refused_like_nginx(tmp_path, certs, name):
    body, line, prefix_only = _cases(certs, tmp_path)[name]
    conf = write(tmp_path, body)
    expected = nginx_message(tmp_path, conf)
    with pytest.raises(ConfigError) as info:
        load_config(conf, str(tmp_path))
    ours = info.value
    if prefix_only:
        assert ours.message.split(" (")[0] == expected.split(" (")[0]
    else:
        # nginx names a place only for errors found while reading the directive.
        assert str(ours) == expected if " in /" in expected else ours.message == expected
    assert (ours.file, ours.line) == (conf, line)


@pytest.mark.nginx
@pytest.mark.parametrize("http,location", [
    ("proxy_ssl_certificate {c.client.cert}; proxy_ssl_certificate_key {c.locked}; "
     "proxy_ssl_password_file {c.passwords};", "proxy_ssl_ciphers HIGH:!aNULL;"),
    ("proxy_ssl_protocols TLSv1.2; proxy_ssl_protocols TLSv1.3; proxy_ssl_verify_depth 2;",
     "proxy_ssl_conf_command Options -SessionTicket; proxy_ssl_crl {c.dir}/nowhere.crl;"),
    ("proxy_ssl_verify on; proxy_ssl_trusted_certificate {c.ca_file};",
     "proxy_ssl_crl {c.crl_file};"),
])
def test_accepted_like_nginx(tmp_path, certs, http, location):
    conf = write(tmp_path, location.format(c=certs), http.format(c=certs))
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{tmp_path}/", "-c", conf],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    load_config(conf, str(tmp_path))
