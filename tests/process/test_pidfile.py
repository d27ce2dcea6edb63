"""The pid file: written, read back with nginx's errors, removed only by its owner."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.process import pidfile


def test_write_read_remove(tmp_path):
    path = str(tmp_path / "gateway.pid")
    pidfile.write(path, 1234)
    assert open(path).read() == "1234\n"
    assert pidfile.read(path) == 1234
    pidfile.remove(path, 1234)
    assert not (tmp_path / "gateway.pid").exists()


def test_remove_leaves_a_file_naming_another_process(tmp_path):
    path = tmp_path / "gateway.pid"
    pidfile.write(str(path), 99)
    pidfile.remove(str(path), 1234)
    assert path.read_text() == "99\n"


@pytest.mark.parametrize("content, message", [
    ("12x\n", 'invalid PID number "12x"'),
    ("\n", 'invalid PID number ""'),
    ("0\n", 'invalid PID number "0"'),
])
def test_invalid_content(tmp_path, content, message):
    path = tmp_path / "gateway.pid"
    path.write_text(content)
    with pytest.raises(GatewayError) as caught:
        pidfile.read(str(path))
    assert str(caught.value) == f'{message} in "{path}"'


def test_missing_file_and_unwritable_place(tmp_path):
    with pytest.raises(GatewayError, match=r'open\(\) ".*/none.pid" failed \(2: No such file'):
        pidfile.read(str(tmp_path / "none.pid"))
    with pytest.raises(GatewayError, match=r'open\(\) ".*/dir/x.pid" failed \(2: No such file'):
        pidfile.write(str(tmp_path / "dir" / "x.pid"), 1)
