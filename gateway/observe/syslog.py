"""Syslog datagrams as nginx sends them (ngx_syslog.c), for access_log and error_log.

One datagram per line, ``<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MESSAGE`` (RFC 3164's header,
PRI = facility * 8 + severity), over a connected non-blocking UDP or unix datagram socket: a
full socket buffer drops the line rather than wait, as nginx's send() does.
"""

from __future__ import annotations

import socket
import time

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
REPORT_EVERY = 1.0     # seconds between two error log lines about one failing server


def hostname() -> str:
    """The HOSTNAME field: gethostname() in lower case, as nginx keeps it (ngx_cycle->hostname)."""
    return socket.gethostname().lower()


class SyslogSender:
    """The socket to one `syslog:server=...` target and the header of its datagrams.

    The socket is opened at the first line; a failed send closes it and the next line opens it
    again, so a syslog daemon restarted under a unix socket is found again (nginx ticket #1477).
    """

    __slots__ = ("peer", "sock", "failures", "_tail", "_second", "_stamp", "_reported")

    def __init__(self, peer, host: str | None = None):
        self.peer = peer
        self.sock: socket.socket | None = None
        self.failures = 0                 # lines lost: the socket refused or had no room
        name = f"{host or hostname()} " if peer.hostname else ""
        self._tail = f" {name}{peer.tag}: ".encode("utf-8", "surrogateescape")
        self._second = -1
        self._stamp = b""
        self._reported = float("-inf")

    def header(self, severity: int, now: int | None = None) -> bytes:
        """``<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: `` for ``now`` (local time, the day space-padded),
        the current second if not given."""
        if now is None:
            now = int(time.time())
        if now != self._second:
            tm = time.localtime(now)
            self._stamp = b"%s %2d %02d:%02d:%02d" % (
                _MONTHS[tm.tm_mon - 1].encode(), tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
            self._second = now
        return b"<%d>%s%s" % (self.peer.facility * 8 + severity, self._stamp, self._tail)

    def send(self, severity: int, message: bytes,
             now: int | None = None) -> tuple[str, OSError] | None:
        """Send one line as a datagram; None, or the (system call, error) that lost it."""
        if self.sock is None:
            try:
                self.sock = self._connect()
            except _Failed as failed:
                self.failures += 1
                return failed.args
        try:
            self.sock.send(self.header(severity, now) + message)
        except BlockingIOError as exc:     # no room now: this line only is lost
            self.failures += 1
            return "send", exc
        except OSError as exc:             # e.g. ECONNREFUSED: the ICMP answer to an earlier line
            self.failures += 1
            self.close()
            return "send", exc
        return None

    def _connect(self) -> socket.socket:
        peer = self.peer
        try:
            sock = socket.socket(peer.family, socket.SOCK_DGRAM)
        except OSError as exc:
            raise _Failed("socket", exc) from exc
        try:
            sock.setblocking(False)
            sock.connect(peer.address)
        except OSError as exc:
            sock.close()
            raise _Failed("connect", exc) from exc
        return sock

    def should_report(self, now: float) -> bool:
        """Whether a failure now deserves an error log line (one a second; the rest are counted)."""
        if now - self._reported < REPORT_EVERY:
            return False
        self._reported = now
        return True

    def describe(self, failure: tuple[str, OSError]) -> str:
        """A failure in nginx's words: ``send() failed (111: ...) while logging to syslog, ...``."""
        call, exc = failure
        return (f"{call}() failed ({exc.errno}: {exc.strerror}) while logging to syslog, "
                f"server: {self.peer.server}")

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class _Failed(Exception):
    """socket() or connect() failed: args are (call, OSError)."""
