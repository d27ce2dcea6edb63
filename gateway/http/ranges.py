"""Large multipart/byteranges answers, streamed from the file as nginx's range filter sends them.

Small ones (gateway/http/static.py's limit) are built in memory; past it the part heads and
the file's ranges go out in turn, a chunk at a time, pausing while the client's buffer is full,
so any number and size of ranges is answered 206 as nginx answers it.
"""

from __future__ import annotations

from collections import deque

from gateway.http.file_sender import CHUNK, FileStream


class MultipartFileResponse:
    """A 206 whose body is ``parts`` ((head bytes, start, length) of the file) then ``tail``."""

    __slots__ = ("status", "headers", "path", "parts", "tail")

    def __init__(self, headers, path, parts, tail: bytes):
        self.status = 206
        self.headers = headers
        self.path = path
        self.parts = parts
        self.tail = tail

    def send(self, conn, request, plan):
        from gateway.http.headers import static_add_headers
        from gateway.http.server import _error_page_status, _header_lines
        status, headers = _error_page_status(request, self.status, self.headers)
        if request.method == "HEAD":
            conn.send_head(status, _header_lines(headers), static_add_headers(plan, headers))
            conn.finish_response()
            return
        try:
            handle = open(self.path, "rb")
        except OSError:
            conn.send_error(500, plan.add_headers)
            return
        conn.send_head(status, _header_lines(headers), static_add_headers(plan, headers))
        sender = MultipartSender(conn, handle, self.parts, self.tail)
        conn.handler = sender
        sender.send()


def multipart(headers, path, ranges, size, ctype, boundary: str) -> MultipartFileResponse:
    """The streamed answer for ``ranges`` (half-open (start, end) pairs) of ``path``."""
    lead = f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes "
    parts = [((lead + f"{start}-{end - 1}/{size}\r\n\r\n").encode("latin-1"), start, end - start)
             for start, end in ranges]
    tail = f"\r\n--{boundary}--\r\n".encode()
    length = sum(len(head) + count for head, _, count in parts) + len(tail)
    headers[0] = ("Content-Type", f"multipart/byteranges; boundary={boundary}")
    headers[1] = ("Content-Length", str(length))
    return MultipartFileResponse(headers, path, parts, tail)


class MultipartSender(FileStream):
    """Sends part heads and file ranges in turn, pausing while the client's buffer is full."""

    __slots__ = ("conn", "handle", "items", "remaining", "paused", "done")

    def __init__(self, conn, handle, parts, tail):
        self.conn = conn
        self.handle = handle
        self.items = deque()
        for head, start, length in parts:
            self.items.append((head, start, length))
        self.items.append((tail, 0, 0))
        self.remaining = 0
        self.paused = False
        self.done = False

    def send(self):
        conn = self.conn
        try:
            while not self.paused and not self.done:
                if self.remaining:
                    chunk = self.handle.read(min(self.remaining, CHUNK))
                    if not chunk:     # the file shrank under us
                        self._fail()
                        return
                    self.remaining -= len(chunk)
                    conn.send_body(chunk)
                    continue
                if not self.items:
                    self._stop()
                    conn.finish_response()
                    return
                head, start, length = self.items.popleft()
                conn.send_body(head)
                if length:
                    self.handle.seek(start)
                    self.remaining = length
        except OSError:
            self._fail()
