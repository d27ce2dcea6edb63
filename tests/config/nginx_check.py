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


def assert_refused_like_nginx(prefix, conf, load=None) -> None:
    """nginx -t refuses `conf`, and `load(path, prefix)` (load_config by default) raises
    ConfigError with its exact words at the same place."""
    import pytest

    from gateway.config import load_config
    from gateway.errors import ConfigError
    code, expected = nginx_refusal(prefix, conf)
    assert code != 0
    with pytest.raises(ConfigError) as info:
        (load or load_config)(str(conf), str(prefix))
    assert str(info.value) == expected
