"""A request head that arrives in pieces, checked with work linear in its size however it is cut.

parse_request_head() takes a whole buffer and checks every line in it. Called again for each
piece of a head sent a byte at a time, it would cost the square of the head's size (and so would
joining the pieces each time). Once a head is found incomplete, the connection keeps its pieces
here instead: a piece that ends no line and crosses no limit can change nothing and is only
counted; a piece that ends lines has just those lines checked; the whole head is joined and
parsed once, when its blank line is there. Both client-connection twins use this class: only
heads that arrive in pieces reach it.
"""

from __future__ import annotations

from gateway.http.parser import check_request_head_lines


class PendingHead:
    """The pieces of an incomplete request head and how far its lines have been checked."""

    __slots__ = ("checked", "tail", "size", "offset", "in_fields", "max_line", "max_head")

    def __init__(self, buffer: bytes, max_line: int, max_head: int):
        self.max_line = max_line
        self.max_head = max_head
        self.settle(buffer)

    def settle(self, buffer: bytes) -> None:
        """Start over from buffer, a head that parse_request_head found incomplete: every
        complete line in it is valid."""
        self.size = len(buffer)
        start = 0
        while start < len(buffer) and buffer[start] in (10, 13):   # empty lines before it
            start += 1
        if buffer.find(b"\n", start) < 0:
            # The request line has not all arrived: parse_request_head will check it.
            self.in_fields = False
            self.offset = start
            self.checked = []
            self.tail = [buffer]
            return
        self.in_fields = True
        self.offset = buffer.rfind(b"\n") + 1
        self.checked = [buffer[:self.offset]]
        self.tail = [buffer[self.offset:]] if self.offset < len(buffer) else []

    def add(self, data: bytes) -> bytes | None:
        """Take the next piece: the head so far when parse_request_head should look at it now
        (its request line or its blank line has arrived, or a limit is crossed), else None.
        Raises what parse_request_head would raise for the lines that arrived."""
        self.tail.append(data)
        self.size += len(data)
        if b"\n" not in data and self.size - self.offset <= self.max_line + 1 \
                and self.size <= self.max_head:
            return None
        chunk = self.tail[0] if len(self.tail) == 1 else b"".join(self.tail)
        if not self.in_fields:
            return chunk
        used = check_request_head_lines(chunk, self.offset, self.max_line, self.max_head)
        if used < 0:
            self.checked.append(chunk)
            return b"".join(self.checked)
        if used:
            self.checked.append(chunk[:used])
            self.offset += used
            chunk = chunk[used:]
        self.tail = [chunk] if chunk else []
        return None
