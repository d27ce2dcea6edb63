"""`status_json;`: the documented shape (a JSON Schema), counts over every worker process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest

from gateway.observe import status_json
from tests.observe.client import get
from tests.support.processes import free_port

SCHEMA = json.loads((Path(status_json.__file__).parent / "status_json.schema.json").read_text())

CONFIG = """
worker_processes 2;
error_log error.log info;
pid server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    upstream app {{ server {backend}; server 127.0.0.1:9 down; server 127.0.0.1:10 backup; }}
    server {{
        listen 127.0.0.1:{port};
        server_name example www.example;
        location = /status {{ status_json; }}
        location /api/ {{ proxy_pass http://app; }}
        location / {{ return 200 "hello"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name other;
        location / {{ return 503; }}
    }}
}}
"""


def status(port) -> dict:
    code, ctype, body = get(port, "/status", "example")
    assert (code, ctype) == (200, "application/json")
    document = json.loads(body)
    jsonschema.validate(document, SCHEMA)
    return document


def test_shape_and_counts_over_workers(start_gateway, backend):
    port = free_port()
    start_gateway(CONFIG.format(port=port, backend=backend.address), port)
    for _ in range(12):
        assert get(port, "/", "example")[0] == 200
        assert get(port, "/api/x", "example")[0] == 200
        assert get(port, "/", "other")[0] == 503
    deadline = time.monotonic() + 15
    while True:      # workers publish once a second
        document = status(port)
        example = document["servers"][0]
        wanted = {"/": 12, "/api/": 12}
        seen = {loc["location"]: loc["requests"]["2xx"] for loc in example["locations"]
                if loc["location"] in wanted}
        if (seen == wanted and len(document["workers"]) == 2) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert seen == wanted
    assert len(document["workers"]) == 2
    example, other = document["servers"]
    assert (example["name"], example["server_names"], example["listen"]) == \
        ("example", ["example", "www.example"], [f"127.0.0.1:{port}"])
    assert other["requests"] == {"total": 12, "1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 12}
    assert document["requests"]["5xx"] == 12 and document["requests"]["2xx"] >= 24
    peers = {p["server"]: p for p in document["upstreams"]["app"]["peers"]}
    assert peers[backend.address]["state"] == "up"
    assert peers[backend.address]["workers"] == {"up": 2, "down": 0, "unhealthy": 0, "failed": 0}
    assert peers["127.0.0.1:9"]["state"] == "down"
    assert peers["127.0.0.1:10"]["backup"] is True
    assert document["unikernels"] == {}
    assert document["connections"]["accepted"] >= 37


@pytest.mark.parametrize("document", [
    {"version": "x"},
    {"version": "x", "time": 1, "workers": [], "connections": {}, "requests": {}, "servers": [],
     "upstreams": {}, "unikernels": {}},
])
def test_the_schema_refuses_other_shapes(document):
    """The schema is strict enough to catch a missing or misnamed field."""
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)
