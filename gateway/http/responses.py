"""Response heads, error pages and the cached Date header."""

from __future__ import annotations

import time
from email.utils import formatdate

from gateway import __version__

REASONS = {
    100: "Continue", 101: "Switching Protocols",
    200: "OK", 201: "Created", 202: "Accepted", 203: "Non-Authoritative Information",
    204: "No Content", 205: "Reset Content", 206: "Partial Content",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Not Allowed", 406: "Not Acceptable", 408: "Request Time-out",
    409: "Conflict", 410: "Gone", 411: "Length Required", 412: "Precondition Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Large",
    415: "Unsupported Media Type", 416: "Requested Range Not Satisfiable",
    421: "Misdirected Request", 429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Temporarily Unavailable", 504: "Gateway Time-out",
    505: "HTTP Version Not Supported", 507: "Insufficient Storage",
}

# Codes nginx has a built-in error page for; others are answered with an empty body.
ERROR_PAGE_CODES = frozenset({301, 302, 303, 307, 308, *range(400, 417), 421, 429, 431,
                              500, 501, 502, 503, 504, 505, 507})
# nginx's page titles that differ from its status-line reason.
_PAGE_TITLES = {302: "302 Found", 401: "401 Authorization Required"}

# nginx's codes for a client certificate it refuses: sent as 400, each page with its text.
SENT_AS_400 = {495: "The SSL certificate error", 496: "No required SSL certificate was sent"}

# Codes for which nginx applies add_header without "always".
ADD_HEADER_CODES = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})

# Codes whose answer nginx sends with "Connection: close" (the request may be unread).
CLOSING_ERRORS = frozenset({400, 408, 413, 414, 431, 495, 496, 500, 501, 505})

SERVER_FULL = f"gateway/{__version__}"
SERVER_SHORT = "gateway"


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\n".encode("latin-1")


_STATUS_LINES = {code: status_line(code) for code in REASONS}


def status_line_cached(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else status_line(status)


def error_page(status: int, server_tokens: bool = True) -> bytes:
    """The small HTML body nginx sends with an error or redirect status."""
    signature = SERVER_FULL if server_tokens else SERVER_SHORT
    text = SENT_AS_400.get(status)
    if text is not None:
        return (f"<html>\r\n<head><title>400 {text}</title></head>\r\n<body>\r\n"
                f"<center><h1>400 Bad Request</h1></center>\r\n<center>{text}</center>\r\n"
                f"<hr><center>{signature}</center>\r\n</body>\r\n</html>\r\n").encode()
    title = _PAGE_TITLES.get(status) or f"{status} {REASONS.get(status, '')}".rstrip()
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>{signature}</center>\r\n</body>\r\n</html>\r\n").encode()


# ngx_http_msie_padding: MSIE and Chrome show their own page for a short error page.
MSIE_PADDING = b"<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" * 6


def padded(request, status: int, body: bytes) -> bytes:
    """``body`` (a built-in error page), padded as nginx's msie_padding pads it."""
    if status < 400 or request is None:
        return body
    where = request.location if request.location is not None else request.server
    if where is not None and not where.settings.msie_padding:
        return body
    agent = request.header("user-agent")
    return body + MSIE_PADDING if agent and pads_for(agent) else body


def pads_for(agent: str) -> bool:
    """nginx's r->headers_in.msie or .chrome (ngx_http_process_user_agent)."""
    if "Opera" in agent:
        return False
    msie = agent.find("MSIE ")
    if msie >= 0 and msie + 7 < len(agent):
        return True
    return "Gecko/" not in agent and "Chrome/" in agent


class DateHeader:
    """``Server`` + ``Date`` header lines, formatted once per second."""

    __slots__ = ("_second", "_full", "_short")

    def __init__(self):
        self._second = -1
        self._full = self._short = b""

    def lines(self, server_tokens: bool = True) -> bytes:
        now = int(time.time())
        if now != self._second:
            date = formatdate(now, usegmt=True)
            self._full = f"Server: {SERVER_FULL}\r\nDate: {date}\r\n".encode()
            self._short = f"Server: {SERVER_SHORT}\r\nDate: {date}\r\n".encode()
            self._second = now
        return self._full if server_tokens else self._short


server_and_date = DateHeader()
