"""Debian's stock /etc/nginx/nginx.conf loads unchanged, with what nginx would serve."""

from __future__ import annotations

import glob
import os

from gateway.config import load_config

STOCK = "/etc/nginx/nginx.conf"


def test_debian_stock_config_loads():
    assert os.path.isfile(STOCK), "Debian's nginx-light must be installed (make bootstrap)"
    cfg = load_config(STOCK, "/usr/share/nginx")
    assert cfg.user == ("www-data", None)
    assert cfg.worker_processes == os.cpu_count()
    assert cfg.pid == "/run/nginx.pid"
    assert [(e.path, e.level) for e in cfg.error_logs] == [("/var/log/nginx/error.log", "error")]
    assert cfg.worker_connections == 768

    (srv,) = cfg.http.servers
    assert [(l.host, l.port, l.default_server) for l in srv.listens] == [
        ("0.0.0.0", 80, True), ("::", 80, True)]
    assert srv.server_names == ["_"]
    assert srv.settings.root == "/var/www/html"
    assert srv.settings.index == ["index.html", "index.htm", "index.nginx-debian.html"]
    (root_loc,) = srv.locations
    assert (root_loc.modifier, root_loc.pattern) == ("", "/")
    s = root_loc.settings
    assert s.try_files == ["$uri", "$uri/", "=404"]
    assert s.root == "/var/www/html"
    assert s.default_type == "application/octet-stream"
    assert s.types["html"] == "text/html" and s.types["png"] == "image/png"
    assert s.types["js"] == "application/javascript" and len(s.types) > 100
    assert [(a.path, a.format) for a in s.access_logs] == [
        ("/var/log/nginx/access.log", cfg.http.log_formats["combined"])]

    modules = sorted(glob.glob("/etc/nginx/modules-enabled/*.conf"))
    expected = [f'"load_module" directive is accepted but not acted on in {m}:1' for m in modules]
    expected += [f'"{name}" directive is accepted but not acted on in {STOCK}:{line}'
                 for name, line in [("sendfile", 18), ("tcp_nopush", 19),
                                    ("types_hash_max_size", 20)]]
    assert cfg.warnings == expected
    assert s.gzip      # Debian's "gzip on;" (line 46) is honoured
    assert cfg.text.count("# configuration file ") == 3 + len(modules)
