"""Real nginx as the reference for refused configs: `nginx -t` and the message it gives."""

from __future__ import annotations

import re
import shutil
import subprocess

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_refusal(prefix, conf) -> tuple[int, str | None]:
    """(nginx -t's exit code, its [emerg] message without the place prefix) for `conf`."""
    proc = subprocess.run([NGINX, "-t", "-q", "-p", f"{prefix}/", "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)
    match = re.search(r"\[emerg\] \d+#\d+: (.*)$", proc.stderr, re.M)
    return proc.returncode, match.group(1) if match else None
