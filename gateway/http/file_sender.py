"""Static file bodies streamed to a client a chunk at a time, pausing while its buffer is full.

The connection calls the client_* methods of whichever handler it holds; a file stream ignores
the request body, answers an aborted client with 499 and closes its file when done.
"""

from __future__ import annotations

CHUNK = 256 * 1024


class FileStream:
    """What every file stream does on the client's events; subclasses define send()."""

    __slots__ = ()

    def _stop(self):
        self.done = True
        self.handle.close()

    def client_write_paused(self):
        self.paused = True

    def client_write_resumed(self):
        self.paused = False
        self.send()

    def client_body(self, pieces):
        pass    # a static request's body is read and dropped

    def client_body_end(self):
        pass

    def client_aborted(self):
        if not self.done:
            self._stop()
            self.conn.request.status = self.conn.request.status or 499
            self.conn.finish_response()

    def cancel(self):
        if not self.done:
            self._stop()

    def check_deadline(self, now):
        pass

    def _fail(self):
        """A read failed or the file shrank: the length promised is wrong, so close."""
        self._stop()
        self.conn.close()
        self.conn.finish_response()


class FileSender(FileStream):
    """Streams a file range to the client, pausing while the client's buffer is full."""

    __slots__ = ("conn", "handle", "remaining", "paused", "done", "writer")

    def __init__(self, conn, handle, offset, length):
        self.conn = conn
        self.handle = handle
        self.remaining = length
        self.paused = False
        self.done = False
        self.writer = None       # a gzip.GzipWriter when the file goes out compressed
        if offset:
            handle.seek(offset)

    def send(self):
        try:
            while self.remaining > 0 and not self.paused and not self.done:
                chunk = self.handle.read(min(self.remaining, CHUNK))
                if not chunk:   # the file shrank under us
                    self._fail()
                    return
                self.remaining -= len(chunk)
                if self.writer is None:
                    self.conn.send_body(chunk)
                else:
                    self.writer.write(chunk)
        except OSError:
            self._fail()
            return
        if self.remaining == 0 and not self.done:
            self._stop()
            if self.writer is not None:
                self.writer.end()
            self.conn.finish_response()

