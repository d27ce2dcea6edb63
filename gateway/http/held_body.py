"""The connection's handler while a request waits before its content handler starts (a
limit_req delay, an auth_request subrequest): the body that comes meanwhile is kept for the
content handler, and the client is paused once PENDING_LIMIT bytes wait."""

from __future__ import annotations

PENDING_LIMIT = 64 * 1024


class BodyHolder:
    """Base of such handlers; a subclass says how it is cancelled (``cancel``)."""

    __slots__ = ("conn", "request", "pieces", "size", "paused", "done")

    def hold(self, conn, request, pieces=()):
        """Become ``conn``'s handler, holding ``pieces`` already read."""
        self.conn = conn
        self.request = request
        self.pieces = list(pieces)
        self.size = sum(len(p) for p in self.pieces)
        self.paused = False
        self.done = False
        conn.handler = self

    def release(self) -> list:
        """Stop holding: no longer the handler, the client read again; the pieces held."""
        self.done = True
        conn = self.conn
        if conn.handler is self:
            conn.handler = None
        if self.paused and conn.transport is not None:
            self.paused = False
            conn.transport.resume_reading()
        pieces, self.pieces = self.pieces, []
        return pieces

    def cancel(self):
        raise NotImplementedError

    # Events from the client ------------------------------------------------

    def client_body(self, pieces):
        for piece in pieces:
            self.size += len(piece)
            self.pieces.append(piece)
        if self.size > PENDING_LIMIT and not self.paused and self.conn.transport is not None:
            self.paused = True
            self.conn.transport.pause_reading()

    def client_body_end(self):
        pass        # the content handler finds the body complete when it starts

    def client_aborted(self):
        if self.done:
            return
        self.cancel()
        self.request.status = self.request.status or 499
        self.conn.finish_response()

    def client_write_paused(self):
        pass

    def client_write_resumed(self):
        pass

    def check_deadline(self, now):
        pass
