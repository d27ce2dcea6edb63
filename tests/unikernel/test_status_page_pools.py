"""`status_page;` with real QEMU pools: a headless browser finds the pool, its instances and rising counts."""

import json

import pytest

from tests.observe.client import get
from tests.support import browser
from tests.unikernel.test_gateway_services import uk_gateway  # noqa: F401  (a fixture)

pytestmark = pytest.mark.qemu


def config(port):
    return f"""
worker_processes 1;
error_log error.log info;
pid gateway.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    unikernel echo {{ image echo; instances 2 2; transport socketpair; setting ping_interval 100ms; }}
    server {{
        listen 127.0.0.1:{port};
        location = /status {{ status_page; }}
        location = /status.json {{ status_json; }}
        location /echo/ {{ unikernel_pass echo; }}
    }}
}}
"""


def echo_location(rows):
    (row,) = [row for key, row in rows.rows.items() if key.endswith(" /echo/")]
    return row


def served(rows):
    return sum(int(row["served"]) for key, row in rows.rows.items() if key.startswith("echo "))


def test_the_page_shows_the_pool_and_its_instances(images, uk_gateway, tmp_path):  # noqa: F811
    gateway = uk_gateway(config)
    for _ in range(4):
        assert get(gateway.port, "/echo/hi")[0] == 200
    pids = {i["pid"] for i in json.loads(get(gateway.port, "/status.json")[2])
            ["unikernels"]["echo"]["instances"]}

    first = browser.Rows(browser.dump_dom(tmp_path, gateway.url("/status")))
    assert first.pools == ["echo"]
    instances = [row for key, row in first.rows.items() if key.startswith("echo ")]
    assert [i["state"] for i in instances] == ["ready", "ready"]
    assert {int(i["pid"]) for i in instances} == pids
    assert {i["accelerator"] for i in instances} <= {"kvm", "tcg"}
    assert served(first) == 4
    assert echo_location(first)["total"] == "4"

    for _ in range(6):
        assert get(gateway.port, "/echo/again")[0] == 200
    second = browser.Rows(browser.dump_dom(tmp_path, gateway.url("/status")))
    assert served(second) == 10
    assert echo_location(second)["total"] == "10"

    # What a person sees: a page of text with the two instances' green "ready" badges.
    size, pixels = browser.pixels(browser.screenshot(tmp_path, gateway.url("/status"),
                                                     tmp_path / "pools.png", 1000, 700))
    assert size == (1000, 700)
    assert browser.near(pixels, (0x22, 0x22, 0x22), 40) > 2000
    assert browser.near(pixels, (0x1b, 0x7f, 0x3b)) > 200
