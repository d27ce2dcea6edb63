"""A worker loads the modules of the features its configuration names, and no others (start time)."""

import json
import subprocess
import sys

# Features a plain proxy configuration does not name, and the modules (ours and the standard
# library's) that only they need.
FEATURE_MODULES = (
    "gateway.http.tls", "gateway.http.http2", "gateway.http.auth_request",
    "gateway.http.zones", "gateway.http.limit_req", "gateway.http.limit_conn", "gateway.http.autoindex",
    "gateway.observe.metrics", "gateway.observe.status_page", "gateway.observe.status_json",
    "gateway.unikernel.service", "multiprocessing", "platform", "pkgutil",
)

PLAIN = """
events { }
http {
    server {
        listen 127.0.0.1:8089;
        location / { proxy_pass http://127.0.0.1:9; }
        location /ok { return 200 ok; }
    }
}
"""

LIMITED = """
events { }
http {
    limit_req_zone $binary_remote_addr zone=one:1m rate=10r/s;
    limit_conn_zone $binary_remote_addr zone=addr:1m;
    server {
        listen 127.0.0.1:8089;
        location / { limit_req zone=one; limit_conn addr 5; }
    }
}
"""

# What the master imports before it forks (gateway/cli.py start), then the worker's application.
START = """
import json, sys
import uvloop
from gateway import cli
from gateway.process import daemon, master, pidfile, privileges, worker
from gateway.process.listeners import Listeners
config = cli.load(cli.parse_args(["-p", sys.argv[1], "-c", sys.argv[2]]))
worker.require_uvloop()
worker.app_class()(config, uvloop.new_event_loop())
print(json.dumps(sorted(m for m in %r if m in sys.modules)))
""" % (FEATURE_MODULES,)


def loaded_by(tmp_path, text):
    conf = tmp_path / "gateway.conf"
    conf.write_text(text)
    done = subprocess.run([sys.executable, "-c", START, str(tmp_path), str(conf)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_plain_proxy_loads_no_tls_http2_limits_metrics_or_unikernel_modules(tmp_path):
    assert loaded_by(tmp_path, PLAIN) == []


def test_limits_load_their_modules_when_configured(tmp_path):
    loaded = loaded_by(tmp_path, LIMITED)
    assert {"gateway.http.zones", "gateway.http.limit_req", "gateway.http.limit_conn"} <= set(loaded)
    assert "gateway.http.tls" not in loaded


def test_a_tls_variable_loads_its_module_with_the_configuration(tmp_path):
    # At load, not at the first request: a worker that switched to `user` may not read the file.
    assert "gateway.http.tls" in loaded_by(tmp_path, PLAIN.replace("return 200 ok;", 'return 200 "$https";'))
