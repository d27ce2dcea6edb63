"""The embedded default (`make run`): its pools start, and every curl line its welcome page shows works."""

import html
import re
import shutil
import subprocess

import pytest

from tests.support import browser
from tests.support.processes import ROOT
from tests.unikernel.test_gateway_services import (  # noqa: F401  (uk_gateway is a fixture)
    instances, uk_gateway, wait_for)

pytestmark = pytest.mark.qemu

DEFAULT = ROOT / "gateway" / "default"


def test_welcome_page_commands_work(uk_gateway, tmp_path):
    page = (DEFAULT / "html" / "index.html").read_text()
    site = tmp_path / "default"
    shutil.copytree(DEFAULT, site)
    port = {}

    def config(p):
        port["n"] = p
        text = (site / "gateway.conf").read_text()
        assert "127.0.0.1:8080" in text
        # The same file on a free port, with its paths resolved beside the copy.
        return text.replace("127.0.0.1:8080", f"127.0.0.1:{p}").replace("include mime.types;",
                                                                          f"include {site}/mime.types;") \
            .replace("root html;", f"root {site}/html;")

    gw = uk_gateway(config)
    assert gw.port == port["n"]
    script = "\n".join(html.unescape(line.split("  #")[0]).replace("8080", str(gw.port))
                       for block in re.findall(r"<pre>(.*?)</pre>", page, re.S)
                       for line in block.strip().splitlines())
    assert script.count("curl ") == 10
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60).stdout
    assert "/hello" in out and "world" in out
    assert "HTTP/1.1 401 Unauthorized" in out
    assert re.search(r"X-Cache: MISS.*X-Cache: HIT", out, re.S)
    assert "hello newcomer (demo), from the upstream" in out
    assert '"sub":"newcomer"' in out.replace(" ", "")
    assert "<html" in out.lower()       # the static site's index page
    assert out.rstrip().endswith("/still-here")      # answered after the kill...
    # ...by the spare: the killed instance restarts and stands by in its place.
    wait_for(lambda: sorted((i["state"], i["restarts"]) for i in instances(gw, "echo"))
             == [("ready", 0), ("spare", 1)], what="echo's killed instance back as the spare")


def test_the_status_page_shows_the_four_pools(uk_gateway, tmp_path):
    """The welcome page links the live status page: a newcomer sees the pools there."""
    assert 'href="/status"' in (DEFAULT / "html" / "index.html").read_text()
    text = (DEFAULT / "gateway.conf").read_text()
    gw = uk_gateway(lambda p: text.replace("127.0.0.1:8080", f"127.0.0.1:{p}")
                    .replace("include mime.types;", f"include {DEFAULT}/mime.types;")
                    .replace("root html;", f"root {DEFAULT}/html;"))
    rows = browser.Rows(browser.dump_dom(tmp_path, gw.url("/status")))
    assert sorted(rows.pools) == ["auth", "echo", "kv", "site"]
    states = [row["state"] for key, row in rows.rows.items() if key.split()[0] in rows.pools]
    # kv runs two instances; echo one and a spare standing by
    assert sorted(states) == ["ready"] * 5 + ["spare"]
