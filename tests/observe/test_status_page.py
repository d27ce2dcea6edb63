"""`status_page;`: the live page in a real headless browser (Chromium), what it shows and who may see it."""

from __future__ import annotations

import http.client
import re
import threading

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from tests.observe.client import get
from tests.support import browser
from tests.support.processes import free_port

CONFIG = """
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    upstream app {{ server {backend}; server 127.0.0.1:9 down; }}
    server {{
        listen 127.0.0.1:{port};
        server_name example;
        location = /status {{ status_page; {access} }}
        location = /status.json {{ status_json; {access} }}
        location /api/ {{ proxy_pass http://app; }}
        location / {{ return 200 "hello"; }}
        location /missing/ {{ return 404; }}
    }}
}}
"""


GREEN, GREY = (0x1b, 0x7f, 0x3b), (0x77, 0x77, 0x77)     # status_page.html's badge colours


def start(start_gateway, backend, access=""):
    port = free_port()
    return start_gateway(CONFIG.format(port=port, backend=backend.address, access=access), port)


def send(port, path, count):
    for _ in range(count):
        get(port, path, "example")


def test_the_page_shows_locations_upstreams_and_a_rising_count(start_gateway, backend, tmp_path):
    gateway = start(start_gateway, backend)
    code, ctype, body = get(gateway.port, "/status", "example")
    assert (code, ctype) == (200, "text/html; charset=utf-8")
    assert b'<meta name="status-json" content="/status.json">' in body
    assert not re.search(rb'(src|href)="(https?:)?//', body)     # no external resources
    send(gateway.port, "/api/x", 5)
    send(gateway.port, "/missing/x", 3)

    first = browser.Rows(browser.dump_dom(tmp_path, gateway.url("/status")))
    api = first.rows["example /api/"]
    assert (api["total"], api["2xx"], api["4xx"]) == ("5", "5", "0")
    assert first.rows["example /missing/"]["4xx"] == "3"
    assert re.fullmatch(r"\d+\.\d/s", api["rate"])          # polled more than once
    peers = {key: row for key, row in first.rows.items() if key.startswith("app ")}
    assert peers[f"app {backend.address}"]["state"] == "up"
    assert peers["app 127.0.0.1:9"]["state"] == "down"
    assert first.cards["errors"] == "3 / 0"

    # Requests sent before and while the browser loads the page again: the count it shows has
    # risen by at least those sent before (the others may or may not be counted yet).
    send(gateway.port, "/api/y", 5)
    sender = threading.Thread(target=send, args=(gateway.port, "/api/z", 20))
    sender.start()
    second = browser.Rows(browser.dump_dom(tmp_path, gateway.url("/status")))
    sender.join()
    assert int(second.rows["example /api/"]["total"]) >= 10
    assert int(second.cards["requests"]) > int(first.cards["requests"])


def test_a_screenshot_shows_text_and_the_green_state_badges(start_gateway, backend, tmp_path):
    gateway = start(start_gateway, backend)
    send(gateway.port, "/api/x", 3)
    png = browser.screenshot(tmp_path, gateway.url("/status"), tmp_path / "status.png", 1200, 800)
    size, pixels = browser.pixels(png)
    assert size == (1200, 800)
    assert len(set(pixels)) > 50                       # not a blank or single-colour page
    assert browser.near(pixels, (0x22, 0x22, 0x22), 40) > 2000    # text, #222 on a light page
    assert browser.near(pixels, GREEN) > 100           # the "up" peer's badge and the "live" mark
    assert browser.near(pixels, GREY) > 100            # the "down" peer's badge


def test_allow_and_deny_apply_to_the_page(start_gateway, backend):
    gateway = start(start_gateway, backend, access="allow 127.0.0.2; deny all;")
    assert get(gateway.port, "/status", "example")[0] == 403
    assert get(gateway.port, "/status.json", "example")[0] == 403
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10,
                                      source_address=("127.0.0.2", 0))
    conn.request("GET", "/status", headers={"Host": "example"})
    assert conn.getresponse().status == 200       # the allowed address
    conn.close()


def test_head_and_other_methods(start_gateway, backend):
    gateway = start(start_gateway, backend)
    code, _, body = get(gateway.port, "/status", "example", method="HEAD")
    assert (code, body) == (200, b"")
    assert get(gateway.port, "/status", "example", method="POST")[0] == 405


HEADER = "pid {tmp}/gw.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"


def load(tmp_path, location):
    conf = tmp_path / "main.conf"
    conf.write_text(HEADER.format(tmp=tmp_path) + "http {\n server {\n listen 127.0.0.1:8099;\n"
                    f" location /s {{\n  {location}\n }}\n location / {{ }}\n }}\n}}\n")
    return load_config(str(conf), str(tmp_path)), conf


def test_the_uri_polled_and_not_inherited(tmp_path):
    config, _ = load(tmp_path, "status_page /admin/status.json;")
    status, other = config.http.servers[0].locations
    assert status.settings.status_page == "/admin/status.json"
    assert other.settings.status_page is None
    config, _ = load(tmp_path, "status_page;")
    assert config.http.servers[0].locations[0].settings.status_page == "/status.json"


@pytest.mark.parametrize("line,message", [
    ("status_page a b;", 'invalid number of arguments in "status_page" directive'),
    ("status_page status.json;", 'invalid parameter "status.json"'),
    ("status_page '/s\"><script>';", 'invalid parameter "/s"><script>"'),
])
def test_bad_arguments_name_the_place(tmp_path, line, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line)
    conf = tmp_path / "main.conf"
    assert str(info.value) == f"{message} in {conf}:8"
