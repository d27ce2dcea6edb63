"""The README's worked example with unikernel services, run as the README says: its app, its config."""

import re
import subprocess
import sys

import pytest

from tests.support.processes import ROOT, free_port, stop, wait_for_port
from tests.unikernel.test_gateway_services import request, uk_gateway  # noqa: F401  (a fixture)

pytestmark = pytest.mark.qemu

EXAMPLE = ROOT / "examples" / "front-proxy"


def test_front_proxy_example_from_the_readme(uk_gateway):
    readme = (ROOT / "README.md").read_text()
    token = re.search(r"examples/front-proxy/app.py 3000 &\n.*\nTOKEN=(\S+)", readme).group(1)
    app_port = free_port()
    app = subprocess.Popen([sys.executable, str(EXAMPLE / "app.py"), str(app_port)])
    try:
        wait_for_port(app_port, app)
        text = (EXAMPLE / "gateway.conf").read_text()
        assert "127.0.0.1:3000" in text and "127.0.0.1:8080" in text
        gw = uk_gateway(lambda port: text.replace("127.0.0.1:3000", f"127.0.0.1:{app_port}")
                        .replace("127.0.0.1:8080", f"127.0.0.1:{port}")
                        .replace("logs/access.log", "access.log"))
        assert request(gw.port, "GET", "/notes")[0] == 401
        auth = {"Authorization": f"Bearer {token}"}
        first = request(gw.port, "GET", "/notes", headers=auth)
        second = request(gw.port, "GET", "/notes", headers=auth)
        assert (first[0], first[1]["x-cache"], second[1]["x-cache"]) == (200, "MISS", "HIT")
        assert b'"user": "alice"' in first[2] and second[2] == first[2]
        assert request(gw.port, "GET", "/health")[::2] == (200, b"ok\n")
    finally:
        stop(app)
