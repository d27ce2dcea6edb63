"""metrics and status_json with real QEMU pools: instances by state, restarts, boot times."""

import json
import signal
from pathlib import Path

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.observe import status_json
from tests.observe.client import get
from tests.unikernel.test_gateway_services import qemu_alive, signal_qemu, uk_gateway, wait_for  # noqa: F401

pytestmark = pytest.mark.qemu

SCHEMA = json.loads((Path(status_json.__file__).parent / "status_json.schema.json").read_text())


def config(port):
    return f"""
worker_processes 1;
error_log error.log info;
pid gateway.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    unikernel echo {{ image echo; instances 2 2; transport socketpair;
                      setting ping_interval 100ms; setting backoff_min 20ms; }}
    server {{
        listen 127.0.0.1:{port};
        location = /metrics {{ metrics; }}
        location = /status {{ status_json; }}
        location /echo/ {{ unikernel_pass echo; }}
    }}
}}
"""


def samples(port):
    status, _, body = get(port, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def document(port):
    status, _, body = get(port, "/status")
    assert status == 200
    doc = json.loads(body)
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_pools_instances_restarts_and_boot_times(images, uk_gateway):  # noqa: F811
    gateway = uk_gateway(config)
    port = gateway.port
    for _ in range(5):
        assert get(port, "/echo/hi")[0] == 200
    pool = wait_for(lambda: (p := document(port)["unikernels"].get("echo")) and
                    [i["state"] for i in p["instances"]] == ["ready", "ready"] and p,
                    what="two ready instances in status_json")
    assert (pool["min"], pool["max"], pool["transport"]) == (2, 2, "socketpair")
    first = pool["instances"][0]
    assert first["pid"] > 0 and first["restarts"] == 0 and first["last_exit"] is None
    assert first["worker"] == document(port)["workers"][0]["pid"]
    ready = ("gateway_unikernel_instances", (("pool", "echo"), ("state", "ready")))
    boots = ("gateway_unikernel_boot_seconds_count", (("pool", "echo"),))
    wait_for(lambda: samples(port).get(ready) == 2 and samples(port).get(boots) == 2,
             what="two ready instances and two boot times in the metrics")

    # kill -9 one QEMU: the supervisor restarts it; both views say so.
    signal_qemu(first["pid"], signal.SIGKILL)
    restarted = wait_for(lambda: [i for i in document(port)["unikernels"]["echo"]["instances"]
                                  if i["name"] == first["name"] and i["restarts"] == 1
                                  and i["state"] == "ready"],
                         what="the killed instance restarted and ready")
    assert restarted[0]["last_exit"] and restarted[0]["pid"] != first["pid"]
    restarts = ("gateway_unikernel_restarts_total", (("pool", "echo"),))
    wait_for(lambda: samples(port).get(restarts) == 1 and samples(port).get(boots) == 3,
             what="one restart and a third boot time in the metrics")
    assert not qemu_alive(first["pid"])
