"""The backend every proxy forwards to, started once per scenario and shared by all systems."""

from __future__ import annotations

import os
import shutil
import sys

from bench import configs, procs
from bench.systems import NGINX, REPO


SITE = os.path.join(REPO, "unikernels", "services", "static", "site")
KV_KEY, KV_VALUE = "/key1", "v" * 64


def start(kind: str, ports: list[int], workdir: str, cpus: str | None) -> tuple[procs.Proc, dict]:
    """Start the backend on ports: nginx (fixed/static content; ``site``: plus the static
    unikernel's files) or the Python server (``slow``: fixed answer after 10 ms; ``echo``:
    the URI echoed; ``kv``: one key's value; ``ws``: a WebSocket echo server)."""
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)   # nginx workers run as an unprivileged user and read www/
    if kind in ("nginx", "site"):
        root = os.path.join(workdir, "www")
        os.makedirs(os.path.join(workdir, "temp"), exist_ok=True)
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o755)
        with open(os.path.join(root, configs.LARGE_NAME), "wb") as f:
            f.write(bytes(range(256)) * (configs.LARGE_SIZE // 256))
        os.chmod(os.path.join(root, configs.LARGE_NAME), 0o644)
        with open(os.path.join(root, configs.TEXT_NAME), "wb") as f:
            f.write(configs.text_page())
        os.chmod(os.path.join(root, configs.TEXT_NAME), 0o644)
        if kind == "site":
            # The same files the static unikernel serves, so both answer the same bytes.
            for name in os.listdir(SITE):
                shutil.copy(os.path.join(SITE, name), root)
                os.chmod(os.path.join(root, name), 0o644)
        text = configs.backend_nginx(ports, root)
        conf = os.path.join(workdir, "backend.conf")
        with open(conf, "w") as f:
            f.write(text)
        argv = [NGINX, "-p", workdir + "/", "-c", conf, "-g", "daemon off;"]
        texts = {"backend.conf": text}
    elif kind in ("slow", "echo", "kv"):
        if len(ports) != 1:
            raise ValueError("the Python backend listens on one port")
        argv = [sys.executable, "-m", "bench.slow_backend", "--port", str(ports[0])]
        argv += {"slow": ["--delay", "0.01"], "echo": ["--delay", "0", "--echo-uri"],
                 "kv": ["--delay", "0", "--item", f"{KV_KEY}={KV_VALUE}"]}[kind]
        texts = {}
    elif kind == "ws":
        argv = [sys.executable, "-m", "bench.ws_backend", "--port", str(ports[0])]
        texts = {}
    else:
        raise ValueError(f"unknown backend {kind!r}")
    proc = procs.start("backend", argv, cpus, workdir, cwd=REPO)
    try:
        for port in ports:
            procs.wait_port(proc, port)
    except procs.StartError:
        procs.stop(proc)
        raise
    return proc, texts
