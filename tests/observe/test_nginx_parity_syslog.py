"""access_log and error_log to syslog, side by side with real nginx: the datagrams one UDP (or
unix datagram) socket of the test receives, and the refused configs in nginx's words."""

from __future__ import annotations

import os
import re
import signal
import socket
import tempfile
import time

import pytest

from gateway.config import load_config
from gateway.config.model import Syslog
from gateway.errors import ConfigError
from gateway.observe.errorlog import ErrorLog
from gateway.observe.syslog import SyslogSender, hostname
from tests.config.nginx_check import nginx_refusal
from tests.support.processes import free_port

CONFIG = """user root;
worker_processes 1;
error_log error.log info;
error_log syslog:server={server},tag=errors error;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    log_format fixed '$request $status "$http_user_agent" $arg_n';
    server {{
        listen 127.0.0.1:{port};
        access_log syslog:server={server} fixed;
        access_log syslog:server={server},facility=local0,severity=error,nohostname,tag=my_App1
                   fixed if=$arg_log;
        access_log syslog:server={server},facility=kern,severity=debug,tag= fixed;
        location / {{ return 200 "ok"; }}
        location /files/ {{ root {root}; }}
    }}
}}
"""

# <PRI>Mmm dd hh:mm:ss : RFC 3164's TIMESTAMP, the day space-padded.
HEADER = re.compile(rb"<(\d+)>([A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d) (.*)\Z", re.S)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
REQUESTS = [
    b"GET /a?n=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: q\"uo\\te \xc3\xa9\r\n\r\n",
    b"GET /b?n=2&log=1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /files/missing?n=3&log=0 HTTP/1.1\r\nHost: x\r\n\r\n",
]


def send(port, raw):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw[:-2] + b"Connection: close\r\n\r\n")
        while sock.recv(65536):
            pass


def receive(sock, count, timeout=10.0) -> list[bytes]:
    """`count` datagrams, or fewer if none comes for `timeout` seconds."""
    got = []
    sock.settimeout(timeout)
    while len(got) < count:
        try:
            got.append(sock.recv(65536))
        except socket.timeout:
            break
    return got


def split(datagram: bytes) -> tuple[int, bytes]:
    """(PRI, the rest after the timestamp); the timestamp's shape is checked (test_header_is_nginx_s
    checks its value)."""
    match = HEADER.match(datagram)
    assert match, datagram
    assert match.group(2)[:3].decode() in MONTHS, datagram
    return int(match.group(1)), match.group(3)


def normalized_error(text: bytes) -> bytes:
    """An error log line without what differs between runs: date, pid#tid, nginx's "*N "."""
    text = re.sub(rb": \d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", b": DATE ", text, count=1)
    text = re.sub(rb" \d+#\d+: (\*\d+ )?", b" PID: ", text)
    return text.split(b", client:")[0]


def run(start, config, port, server_sock) -> list[bytes]:
    server = start(config, port)
    for raw in REQUESTS:
        send(port, raw)
    # Per request the plain log and the kern one; the local0 one for ?log=1; the 404's error.
    got = receive(server_sock, 3 * 2 + 1 + 1)
    server.stop()
    got += receive(server_sock, 100, timeout=0.5)      # nothing more (no error at shutdown)
    return got


def by_pri(datagrams):
    """{PRI: [the rest after the timestamp, ...]} in the order they came."""
    out = {}
    for datagram in datagrams:
        pri, rest = split(datagram)
        out.setdefault(pri, []).append(rest)
    return out


@pytest.fixture
def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


@pytest.mark.nginx
def test_access_and_error_datagrams_match_nginx(tmp_path, start_nginx, start_gateway):
    root = tmp_path / "root"
    (root / "files").mkdir(parents=True)
    results = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = free_port()
            config = CONFIG.format(server=f"127.0.0.1:{sock.getsockname()[1]}", port=port,
                                   root=root)
            results[name] = by_pri(run(start, config, port, sock))
    nginx, gateway = results["nginx"], results["gateway"]
    host = hostname().encode()
    assert sorted(gateway) == sorted(nginx) == [7, 131, 187, 190]
    # local7.info (23 * 8 + 6), the hostname, the default tag; no newline at the end.
    assert gateway[190] == nginx[190] == [
        host + b' nginx: GET /a?n=1 HTTP/1.1 200 "q\\x22uo\\x5Cte \\xC3\\xA9" 1',
        host + b' nginx: GET /b?n=2&log=1 HTTP/1.1 200 "-" 2',
        host + b' nginx: GET /files/missing?n=3&log=0 HTTP/1.1 404 "-" 3']
    # local0.error, nohostname, only where if= is neither empty nor "0".
    assert gateway[131] == nginx[131] == [b'my_App1: GET /b?n=2&log=1 HTTP/1.1 200 "-" 2']
    # kern.debug is PRI 7; an empty tag= leaves "HOSTNAME : ".
    assert gateway[7] == nginx[7]
    assert [line.split(b": GET")[0] for line in gateway[7]] == [host + b" "] * 3
    (error,) = gateway[187]                              # local7 (23) * 8 + error (3)
    (nginx_error,) = nginx[187]
    assert error.startswith(host + b" errors: ") and nginx_error.startswith(host + b" errors: ")
    assert normalized_error(error) == normalized_error(nginx_error)
    assert b'[error] PID: open() "' in normalized_error(error)
    assert not error.endswith(b"\n")


DEFAULTS = """user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    log_format fixed '$request $status';
    server {{
        listen 127.0.0.1:{port};
        access_log syslog:server={server} fixed;
        location / {{ return 200 "ok"; }}
    }}
}}
"""


@pytest.mark.nginx
def test_unix_datagram_socket_and_defaults(start_nginx, start_gateway):
    results = {}
    folder = tempfile.mkdtemp(prefix="syslog-", dir="/tmp")      # short: sun_path holds 108
    try:
        for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
            path = os.path.join(folder, f"{name}.sock")
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(path)
                port = free_port()
                server = start(DEFAULTS.format(server=f"unix:{path}", port=port), port)
                send(port, b"GET /u HTTP/1.1\r\nHost: x\r\n\r\n")
                results[name] = [split(d) for d in receive(sock, 1)]
                server.stop()
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    expected = [(23 * 8 + 6, hostname().encode() + b" nginx: GET /u HTTP/1.1 200")]
    assert results["gateway"] == results["nginx"] == expected


# Refused like nginx -t refuses them, in its words and at its file:line.
HEAD = "pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
REFUSED = [
    ("no_server", "http {\n access_log syslog:facility=local1;\n}\n"),
    ("empty", "http {\n access_log syslog:;\n}\n"),
    ("unknown_parameter", "http {\n access_log syslog:server=127.0.0.1,level=info;\n}\n"),
    ("nohostname_value", "http {\n access_log syslog:server=127.0.0.1,nohostname=1;\n}\n"),
    ("trailing_comma", "http {\n access_log syslog:server=127.0.0.1,;\n}\n"),
    ("facility", "http {\n access_log syslog:server=127.0.0.1,facility=local8;\n}\n"),
    ("severity", "http {\n access_log syslog:server=127.0.0.1,severity=warning;\n}\n"),
    ("duplicate_server", "http {\n access_log syslog:server=127.0.0.1,server=127.0.0.2;\n}\n"),
    ("duplicate_facility",
     "http {\n access_log syslog:server=127.0.0.1,facility=user,facility=user;\n}\n"),
    ("duplicate_severity",
     "http {\n access_log syslog:severity=info,server=127.0.0.1,severity=info;\n}\n"),
    ("duplicate_tag", "http {\n access_log syslog:server=127.0.0.1,tag=a,tag=b;\n}\n"),
    ("tag_length", "http {\n access_log syslog:server=127.0.0.1,tag=" + "a" * 33 + ";\n}\n"),
    ("tag_characters", "http {\n access_log syslog:server=127.0.0.1,tag=my-app;\n}\n"),
    ("invalid_port", "http {\n access_log syslog:server=127.0.0.1:x;\n}\n"),
    ("port_zero", "http {\n access_log syslog:server=127.0.0.1:0;\n}\n"),
    ("port_empty", "http {\n access_log syslog:server=127.0.0.1:;\n}\n"),
    ("no_host", "http {\n access_log syslog:server=:514;\n}\n"),
    ("uri", "http {\n access_log syslog:server=127.0.0.1/x;\n}\n"),
    ("v6_bracket", "http {\n access_log syslog:server=[::1;\n}\n"),
    ("v6_address", "http {\n access_log syslog:server=[::g]:514;\n}\n"),
    ("v6_after", "http {\n access_log syslog:server=[::1]x;\n}\n"),
    ("host_not_found", "http {\n access_log syslog:server=nonexistent.invalid;\n}\n"),
    ("unix_no_path", "http {\n access_log syslog:server=unix:;\n}\n"),
    ("unix_long", "http {\n access_log syslog:server=unix:/" + "p" * 120 + ";\n}\n"),
    ("buffered", "http {\n access_log syslog:server=127.0.0.1 combined buffer=4k;\n}\n"),
    ("gzip", "http {\n access_log syslog:server=127.0.0.1 combined gzip;\n}\n"),
    ("flush_only", "http {\n access_log syslog:server=127.0.0.1 combined flush=1s;\n}\n"),
    ("unknown_format", "http {\n access_log syslog:server=127.0.0.1 nosuch;\n}\n"),
    ("error_log_level", "error_log syslog:server=127.0.0.1 loud;\nhttp {\n}\n"),
    ("error_log_facility", "error_log syslog:server=127.0.0.1,facility=x;\nhttp {\n}\n"),
    ("error_log_no_server", "error_log syslog:tag=x;\nhttp {\n}\n"),
]


@pytest.mark.nginx
@pytest.mark.parametrize("name,body", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_like_nginx(tmp_path, name, body):
    conf = tmp_path / "main.conf"
    conf.write_text(HEAD.format(tmp=tmp_path) + body)
    code, expected = nginx_refusal(tmp_path, conf)
    assert code != 0 and expected is not None
    with pytest.raises(ConfigError) as info:
        load_config(str(conf), str(tmp_path))
    assert str(info.value) == expected


ACCEPTED = """http {
 log_format f '$uri';
 server {
  listen 127.0.0.1:1;
  access_log syslog:server=127.0.0.1,facility=local3,severity=warn,tag=Edge_1,nohostname f
             if=$arg_x;
  access_log syslog:server=[::1]:5514 combined;
  access_log syslog:server=unix:/dev/log,tag=;
 }
}
"""


@pytest.mark.nginx
def test_accepted_forms(tmp_path):
    conf = tmp_path / "main.conf"
    conf.write_text(HEAD.format(tmp=tmp_path) + "error_log syslog:server=localhost:99 warn;\n"
                    + ACCEPTED)
    assert nginx_refusal(tmp_path, conf)[0] == 0
    config = load_config(str(conf), str(tmp_path))
    (_, error_log) = config.error_logs
    assert error_log.level == "warn" and error_log.path == "syslog:server=localhost:99"
    assert error_log.syslog == Syslog("localhost:99", socket.AF_INET, ("127.0.0.1", 99))
    (server,) = config.http.servers
    (conditional, v6, unix) = server.settings.access_logs
    assert conditional.condition == "$arg_x" and conditional.format == "$uri"
    assert conditional.syslog == Syslog("127.0.0.1", socket.AF_INET, ("127.0.0.1", 514),
                                        facility=19, severity=4, tag="Edge_1", hostname=False)
    assert v6.path == "syslog:server=[::1]:5514" and v6.buffer == 0
    assert v6.syslog == Syslog("[::1]:5514", socket.AF_INET6, ("::1", 5514, 0, 0))
    assert unix.syslog == Syslog("unix:/dev/log", socket.AF_UNIX, "/dev/log", tag="")


# The sender on its own: header, severity of error log lines, failures that never block.

def peer(address, **kw):
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    return Syslog("test", family, address, **kw)


def test_header_is_nginx_s():
    when = int(time.mktime((2026, 3, 5, 7, 8, 9, 0, 0, -1)))
    assert SyslogSender(peer(("127.0.0.1", 9)), "Host").header(6, when) == \
        b"<190>Mar  5 07:08:09 Host nginx: "
    sender = SyslogSender(peer(("127.0.0.1", 9), facility=0, tag="t", hostname=False))
    assert sender.header(7, when + 86400 * 10) == b"<7>Mar 15 07:08:09 t: "


def test_error_log_severity_is_the_line_s_level(udp):
    log = ErrorLog()
    log.configure([("syslog:test", "info", peer(udp.getsockname(), facility=1, tag="gw"))])
    try:
        log.warn("one")
        log.debug("not sent")
        log.emerg("two")
    finally:
        log.configure([("stderr", "error")])
    got = [split(d) for d in receive(udp, 3, timeout=1.0)]
    assert [pri for pri, _ in got] == [8 + 4, 8 + 0]
    for (_, rest), (level, text) in zip(got, (("warn", b"one"), ("emerg", b"two"))):
        assert re.fullmatch(rb"\S+ gw: \d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[%s\] %d#0: %s"
                            % (level.encode(), os.getpid(), text), rest), rest


def test_failures_are_counted_and_never_block(tmp_path, udp):
    # Nothing listens on the port: the kernel's ICMP answer fails the next send (ECONNREFUSED);
    # the socket is closed and opened again, and no line waits.
    closed = udp.getsockname()
    udp.close()
    sender = SyslogSender(peer(closed))
    results = [sender.send(6, b"x") for _ in range(6)]
    assert sender.failures >= 2 and sender.failures == sum(r is not None for r in results)
    assert all(r[0] == "send" and r[1].errno == 111 for r in results if r is not None)
    # A reader that never reads: the queue fills, lines are dropped without waiting.
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as reader:
        reader.bind(path)
        sender = SyslogSender(peer(path))
        start = time.monotonic()
        results = [sender.send(6, b"y" * 1000) for _ in range(5000)]
        assert time.monotonic() - start < 5
        assert any(r is not None and isinstance(r[1], BlockingIOError) for r in results)
        assert sender.sock is not None             # EAGAIN keeps the socket
        sender.close()
    missing = SyslogSender(peer(str(tmp_path / "absent")))
    failure = missing.send(6, b"z")
    assert failure[0] == "connect" and missing.failures == 1
    assert missing.describe(failure) == ("connect() failed (2: No such file or directory) "
                                         "while logging to syslog, server: test")


def test_gateway_reports_an_unreachable_server_once_a_second(tmp_path, start_gateway, udp):
    closed = udp.getsockname()
    udp.close()
    port = free_port()
    config = DEFAULTS.format(server=f"127.0.0.1:{closed[1]}", port=port)
    gateway = start_gateway(config, port)
    for _ in range(6):
        send(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    gateway.stop(signal.SIGQUIT)
    lines = [line for line in gateway.errors().splitlines() if "syslog" in line]
    assert len(lines) == 1, lines
    assert "[error]" in lines[0]
    assert "send() failed (111: Connection refused) while logging to syslog, server: " \
        f"127.0.0.1:{closed[1]}" in lines[0]


def test_error_log_reports_its_syslog_failure_to_the_other_targets(tmp_path, udp):
    closed = udp.getsockname()
    udp.close()
    log = ErrorLog()
    path = str(tmp_path / "error.log")
    log.configure([("syslog:test", "info", peer(closed)), (path, "info")])
    try:
        for word in ("one", "two", "three"):
            log.info(word)
    finally:
        log.configure([("stderr", "error")])
    # The first datagram goes; its ICMP answer fails the second send, reported (once) before
    # the file gets that line, as the syslog target comes first; the third opens a new socket.
    lines = open(path).read().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "one",
        "send() failed (111: Connection refused) while logging to syslog, server: test",
        "two", "three"]
