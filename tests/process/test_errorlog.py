"""The error log: nginx's line format, level filtering per target, reopen after a move."""

from __future__ import annotations

import os
import re

import pytest

from gateway.errors import GatewayError
from gateway.observe.errorlog import LEVELS, ErrorLog, format_os_error, get_logger, log

LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] (\d+)#0: (.*)$")


def lines(path) -> list[tuple[str, str]]:
    with open(path) as file:
        found = []
        for line in file.read().splitlines():
            match = LINE.match(line)
            assert match, line
            assert int(match.group(2)) == os.getpid()
            found.append((match.group(1), match.group(3)))
        return found


def test_lines_have_nginx_format_and_levels_filter(tmp_path):
    path = tmp_path / "error.log"
    errors = ErrorLog()
    errors.configure([(str(path), "warn")])
    for level in LEVELS:
        errors.log(level, f"at {level}")
    errors.warn("a warning")
    errors.info("not shown")
    assert lines(path) == [("emerg", "at emerg"), ("alert", "at alert"), ("crit", "at crit"),
                           ("error", "at error"), ("warn", "at warn"), ("warn", "a warning")]


def test_each_target_has_its_own_level(tmp_path):
    verbose, quiet = tmp_path / "debug.log", tmp_path / "crit.log"
    errors = ErrorLog()
    errors.configure([(str(verbose), "debug"), (str(quiet), "crit")])
    errors.notice("started")
    errors.alert("trouble")
    assert lines(verbose) == [("notice", "started"), ("alert", "trouble")]
    assert lines(quiet) == [("alert", "trouble")]
    assert errors.enabled("debug") and errors.paths == [str(verbose), str(quiet)]


def test_reopen_writes_to_a_new_file_after_a_move(tmp_path):
    path = tmp_path / "error.log"
    errors = ErrorLog()
    errors.configure([(str(path), "info")])
    errors.info("before")
    os.rename(path, tmp_path / "error.log.1")
    errors.info("still the old file")
    errors.reopen()
    errors.info("after")
    assert lines(tmp_path / "error.log.1") == [("info", "before"), ("info", "still the old file")]
    assert lines(path) == [("info", "after")]


def test_an_unopenable_path_is_an_nginx_style_error(tmp_path):
    errors = ErrorLog()
    with pytest.raises(GatewayError) as caught:
        errors.configure([(str(tmp_path / "no" / "error.log"), "error")])
    assert str(caught.value) == (f'open() "{tmp_path}/no/error.log" failed '
                                 "(2: No such file or directory)")


def test_an_unknown_level_is_refused(tmp_path):
    with pytest.raises(GatewayError, match='invalid log level "loud"'):
        ErrorLog().configure([(str(tmp_path / "e.log"), "loud")])


def test_stderr_target(capfd):
    errors = ErrorLog()
    errors.configure([("stderr", "error")])
    errors.error("to the terminal")
    errors.warn("filtered")
    assert errors.writes_to_stderr()
    err = capfd.readouterr().err
    assert LINE.match(err.rstrip("\n")).group(3) == "to the terminal"
    assert "filtered" not in err


def test_the_module_logger_is_shared():
    assert get_logger() is log


def test_os_error_wording():
    exc = OSError(13, "Permission denied")
    assert format_os_error("open", "/x", exc) == 'open() "/x" failed (13: Permission denied)'
