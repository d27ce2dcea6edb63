"""Each atheris target in fuzz/ runs for a few seconds without a crash (`make fuzz` runs them longer)."""

import pathlib
import subprocess
import sys

import pytest

FUZZ = pathlib.Path(__file__).resolve().parents[1] / "fuzz"
TARGETS = ["request_head", "response_head", "chunked_body", "config", "wire"]
SECONDS = 5


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_without_a_crash(target, tmp_path):
    done = subprocess.run(
        [sys.executable, str(FUZZ / f"{target}.py"), f"-max_total_time={SECONDS}",
         f"-artifact_prefix={tmp_path}/"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS + 60)
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert done.returncode == 0 and not crashes, (crashes, done.stderr[-4000:])
    assert "Done " in done.stderr
