"""HTTP/1.x message heads, body framing and chunked bodies: the pure-Python specification.

``_fastpath/httpparse.pyx`` must give identical results for every input
(tests/http/test_parser.py runs both).  Where RFC 9112 and nginx differ this
module follows the RFC's stricter reading, except where noted:

* bare LF ends a head line (nginx and RFC 9112 2.2 allow it), but the chunked
  framing lines must end in CRLF (nginx also takes LF there): we relay chunked
  bodies verbatim, so a laxer reading than the upstream's would let requests
  be smuggled past us.
* one or more SP between request-line parts (nginx; RFC 9112 3 permits it),
  no trailing whitespace after the version (nginx allows it).
* methods are any RFC 9110 token (nginx: upper-case letters, ``_`` and ``-``).
* field values may not hold control characters other than HTAB (nginx only
  refuses NUL); obs-fold, whitespace before the colon and a line without a
  colon are a 400.  Request field names are any bytes but CTL, SP, DEL and
  ":", as in nginx (ngx_http_parse_header_line); a name of other bytes than
  letters, digits and "-" is reported (``odd_names``) for the caller to apply
  underscores_in_headers and ignore_invalid_headers (gateway/http/header_names.py).
* HTTP/0.9 (no version; nginx still answers it) and HTTP/0.x are a 400,
  other versions besides 1.0 and 1.1 a 505 (nginx serves 1.x, x > 1, as 1.1).
* a header line or head over the limits is RFC 6585's 431 (nginx: 400
  "Request Header Or Cookie Too Large"); a long request line is a 414 in both.
* tests/http/test_parser.py checks each of these against a running nginx.
"""

from __future__ import annotations

import re

from gateway.errors import (BadRequest, HeadersTooLarge, InvalidUpstreamResponse,
                            NotImplementedMethod, UriTooLong, VersionNotSupported)

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_REQUEST_LINE = re.compile(
    rb"([" + _TCHAR + rb"]+) +([\x21-\x7e\x80-\xff]+) +HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: ([\t\x20-\x7e\x80-\xff]*))?")
_FIELD_LINE = re.compile(rb"([" + _TCHAR + rb"]+):([\t\x20-\x7e\x80-\xff]*)")
# A request's field line: first as most are, a name of letters, digits and "-" (the names nginx
# calls valid), else with any name nginx takes (_ODD_FIELD_LINE: the head has odd_names).
_PLAIN_FIELD_LINE = re.compile(rb"([-0-9A-Za-z]+):([\t\x20-\x7e\x80-\xff]*)")
_ODD_FIELD_LINE = re.compile(rb"([\x21-\x39\x3b-\x7e\x80-\xff]+):([\t\x20-\x7e\x80-\xff]*)")

_INT64_MAX = (1 << 63) - 1

__all__ = [
    "parse_request_head", "check_request_head_lines", "request_body_framing",
    "parse_response_head", "response_body_framing", "ChunkedDecoder", "split_target",
]


def _line_end(buf: bytes, start: int, lf: int) -> int:
    """End of a line's content: before the CR of a CRLF, else at the bare LF."""
    if lf > start and buf[lf - 1] == 13:
        return lf - 1
    return lf


def _check_partial(buf: bytes, start: int, max_line: int, max_head: int, too_long, what: str):
    """Reject an unterminated line or head that can no longer fit its limits."""
    size = len(buf) - start
    if size and buf[-1] == 13:
        size -= 1           # the CR may be the start of the CRLF
    if size > max_line:
        raise too_long(f"{what} line too long")
    if len(buf) > max_head:
        raise HeadersTooLarge("head too large")


def parse_request_head(buf: bytes, max_line: int, max_head: int):
    """Parse a request head: None if incomplete, else
    (method, target, version, headers, consumed, odd_names)."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    n = len(buf)
    pos = 0
    # RFC 9112 2.2: ignore empty lines before the request line (nginx does too).
    while pos < n:
        c = buf[pos]
        if c == 10:
            pos += 1
        elif c == 13 and pos + 1 < n and buf[pos + 1] == 10:
            pos += 2
        else:
            break

    lf = buf.find(b"\n", pos)
    if lf < 0:
        _check_partial(buf, pos, max_line, max_head, UriTooLong, "request")
        return None
    end = _line_end(buf, pos, lf)
    if end - pos > max_line:
        raise UriTooLong("request line too long")
    if lf + 1 > max_head:
        raise HeadersTooLarge("head too large")
    m = _REQUEST_LINE.fullmatch(buf, pos, end)
    if m is None:
        raise BadRequest("invalid request line")
    method, target, major, minor = m.groups()
    if major == b"1" and minor in (b"0", b"1"):
        version = 10 if minor == b"0" else 11
    elif major == b"0":
        raise BadRequest("invalid HTTP version")
    else:
        raise VersionNotSupported("unsupported HTTP version")
    # RFC 9112 3.2.4: asterisk-form is only for OPTIONS.
    if target == b"*" and method != b"OPTIONS":
        raise BadRequest("asterisk-form target without OPTIONS")

    headers = []
    append = headers.append
    find = buf.find
    field = _PLAIN_FIELD_LINE.fullmatch
    odd_names = False
    pos = lf + 1
    while True:
        lf = find(b"\n", pos)
        if lf < 0:
            _check_partial(buf, pos, max_line, max_head, HeadersTooLarge, "header")
            return None
        end = lf - 1 if lf > pos and buf[lf - 1] == 13 else lf
        if end - pos > max_line:
            raise HeadersTooLarge("header line too long")
        if lf >= max_head:
            raise HeadersTooLarge("head too large")
        if end == pos:
            return method, target, version, headers, lf + 1, odd_names
        m = field(buf, pos, end)
        if m is None:
            m = _ODD_FIELD_LINE.fullmatch(buf, pos, end)
            if m is None:
                raise BadRequest("invalid header line")
            odd_names = True
        name, value = m.groups()
        append((name.lower(), name, value.strip(b" \t")))
        pos = lf + 1


def check_request_head_lines(chunk: bytes, offset: int, max_line: int, max_head: int) -> int:
    """Check the field lines of an incomplete request head that arrived since the last look.

    chunk starts at a line start ``offset`` bytes into the head, past the request line, and the
    lines before it were checked. Returns how many bytes of chunk are complete valid lines, or -1
    once the blank line ending the head is there (then parse_request_head takes the whole head).
    Raises what parse_request_head raises for these lines, in the same order of checks. Only heads
    that arrive in pieces come here: the compiled parser needs no twin of it.
    """
    n = len(chunk)
    pos = 0
    field = _ODD_FIELD_LINE.fullmatch
    while True:
        lf = chunk.find(b"\n", pos)
        if lf < 0:
            size = n - pos
            if size and chunk[-1] == 13:
                size -= 1           # the CR may be the start of the CRLF
            if size > max_line:
                raise HeadersTooLarge("header line too long")
            if offset + n > max_head:
                raise HeadersTooLarge("head too large")
            return pos
        end = lf - 1 if lf > pos and chunk[lf - 1] == 13 else lf
        if end - pos > max_line:
            raise HeadersTooLarge("header line too long")
        if offset + lf >= max_head:
            raise HeadersTooLarge("head too large")
        if end == pos:
            return -1
        if field(chunk, pos, end) is None:
            raise BadRequest("invalid header line")
        pos = lf + 1


def parse_response_head(buf: bytes, max_head: int):
    """Parse a response head: None if incomplete, else (version, status, reason, headers, consumed)."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    lf = buf.find(b"\n")
    if lf < 0:
        if len(buf) > max_head:
            raise InvalidUpstreamResponse("upstream sent too big header")
        return None
    if lf + 1 > max_head:
        raise InvalidUpstreamResponse("upstream sent too big header")
    m = _STATUS_LINE.fullmatch(buf, 0, _line_end(buf, 0, lf))
    if m is None:
        raise InvalidUpstreamResponse("upstream sent no valid HTTP/1.0 header")
    version = 10 if m.group(1) == b"0" else 11
    status = int(m.group(2))
    reason = m.group(3) or b""

    headers = []
    pos = lf + 1
    while True:
        lf = buf.find(b"\n", pos)
        if lf < 0:
            if len(buf) > max_head:
                raise InvalidUpstreamResponse("upstream sent too big header")
            return None
        if lf + 1 > max_head:
            raise InvalidUpstreamResponse("upstream sent too big header")
        end = _line_end(buf, pos, lf)
        if end == pos:
            return version, status, reason, headers, lf + 1
        m = _FIELD_LINE.fullmatch(buf, pos, end)
        if m is None:
            raise InvalidUpstreamResponse("upstream sent invalid header")
        name = m.group(1)
        headers.append((name.lower(), name, m.group(2).strip(b" \t")))
        pos = lf + 1


def _content_length(value: bytes, error):
    """A Content-Length value as an int (RFC 9110 8.6: 1*DIGIT, no lists)."""
    if not value or not value.isdigit():
        raise error("invalid Content-Length")
    length = int(value)
    if length > _INT64_MAX:
        raise error("invalid Content-Length")
    return length


def _framing_fields(headers, error):
    """The Content-Length value (None if absent) and the joined Transfer-Encoding (or None)."""
    length = None
    coding = None
    for lower, _name, value in headers:
        if lower == b"content-length":
            if length is not None:
                raise error("duplicate Content-Length")     # nginx refuses these too
            length = value
        elif lower == b"transfer-encoding":
            coding = value if coding is None else coding + b"," + value
    return length, coding


def _codings(value: bytes):
    """The transfer-codings of a Transfer-Encoding list, lower-cased, empty items dropped."""
    return [c for c in (item.strip(b" \t").lower() for item in value.split(b",")) if c]


def request_body_framing(headers, version: int):
    """How a request body is delimited: ("none"|"length"|"chunked", length)."""
    length, coding = _framing_fields(headers, BadRequest)
    if coding is not None:
        if version == 10:
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        # RFC 9112 6.1: both present is a smuggling attempt; reject.
        if length is not None:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        codings = _codings(coding)
        for item in codings:
            if item != b"chunked":
                raise NotImplementedMethod("unknown transfer-coding")
        if len(codings) != 1:
            raise BadRequest("invalid Transfer-Encoding")
        return "chunked", 0
    if length is not None:
        return "length", _content_length(length, BadRequest)
    return "none", 0


def response_body_framing(status: int, headers, request_method):
    """How a response body is delimited: ("none"|"length"|"chunked"|"close", length)."""
    if (request_method == b"HEAD" or request_method == "HEAD" or status < 200
            or status == 204 or status == 304):
        return "none", 0
    length, coding = _framing_fields(headers, InvalidUpstreamResponse)
    if coding is not None and length is not None:
        # RFC 9112 6.3 lets Transfer-Encoding override, "ought to be handled as an error":
        # nginx 1.23+ refuses it, and a relay of both would split the response for some clients.
        raise InvalidUpstreamResponse('upstream sent "Content-Length" and "Transfer-Encoding" '
                                      'headers at the same time')
    if coding is not None:
        # RFC 9112 6.3: without a final "chunked" the body runs to the end of the connection.
        codings = _codings(coding)
        if codings and codings[-1] == b"chunked":
            return "chunked", 0
        return "close", 0
    if length is not None:
        return "length", _content_length(length, InvalidUpstreamResponse)
    return "close", 0


# Chunked decoder states.
_SIZE, _SIZE_MORE, _BWS, _EXT, _SIZE_LF, _DATA, _DATA_CR, _DATA_LF = range(8)
_TRAILER, _TRAILER_LINE, _TRAILER_LF, _END_LF, _DONE = range(8, 13)

MAX_SIZE_LINE = 4096        # a chunk-size line with extensions
MAX_TRAILER = 8192          # the whole trailer section
_MAX_SIZE_DIGITS = 16

_HEX = {c: int(chr(c), 16) for c in b"0123456789abcdefABCDEF"}


class ChunkedDecoder:
    """Incremental RFC 9112 7.1 chunked-body delimiter and (optionally) decoder."""

    __slots__ = ("state", "remaining", "line_len", "digits", "trailer_len")

    def __init__(self):
        self.state = _SIZE
        self.remaining = 0
        self.line_len = 0
        self.digits = 0
        self.trailer_len = 0

    @property
    def done(self) -> bool:
        """True once the last chunk and the trailer section are consumed."""
        return self.state == _DONE

    def feed(self, data: bytes, collect: bool = False):
        """Consume the body bytes at the start of data: (count, payload pieces or None)."""
        if type(data) is not bytes:
            data = bytes(data)
        pieces = [] if collect else None
        state = self.state
        n = len(data)
        i = 0
        try:
            while i < n and state != _DONE:
                if state == _DATA:
                    take = min(self.remaining, n - i)
                    if collect:
                        pieces.append(data[i:i + take])
                    i += take
                    self.remaining -= take
                    if self.remaining == 0:
                        state = _DATA_CR
                    continue
                c = data[i]
                i += 1
                if state <= _EXT:
                    self.line_len += 1
                    if self.line_len > MAX_SIZE_LINE:
                        raise BadRequest("chunk size line too long")
                    state = self._size_byte(state, c)
                elif state == _SIZE_LF:
                    if c != 10:
                        raise BadRequest("invalid chunk size line")
                    state = _DATA if self.remaining else _TRAILER
                elif state == _DATA_CR:
                    if c != 13:
                        raise BadRequest("missing CRLF after chunk data")
                    state = _DATA_LF
                elif state == _DATA_LF:
                    if c != 10:
                        raise BadRequest("missing CRLF after chunk data")
                    state = _SIZE
                    self.line_len = 0
                    self.digits = 0
                else:
                    self.trailer_len += 1
                    if self.trailer_len > MAX_TRAILER:
                        raise BadRequest("chunked trailer too large")
                    state = self._trailer_byte(state, c)
        finally:
            self.state = state
        return i, pieces

    def _size_byte(self, state: int, c: int) -> int:
        """Advance through a chunk-size line: size [BWS ; ext] CR."""
        if state == _SIZE or state == _SIZE_MORE:
            digit = _HEX.get(c)
            if digit is not None:
                self.digits += 1
                if self.digits > _MAX_SIZE_DIGITS or self.remaining > (_INT64_MAX >> 4):
                    raise BadRequest("chunk size too large")
                self.remaining = (self.remaining << 4) | digit
                return _SIZE_MORE
            if state == _SIZE:
                raise BadRequest("invalid chunk size")
        elif state == _EXT:
            if c == 13:
                return _SIZE_LF
            if c == 9 or 32 <= c < 127 or c >= 128:
                return _EXT
            raise BadRequest("invalid chunk extension")
        if c == 32 or c == 9:
            return _BWS
        if c == 59:     # ";"
            return _EXT
        if c == 13:
            return _SIZE_LF
        raise BadRequest("invalid chunk size")

    def _trailer_byte(self, state: int, c: int) -> int:
        """Advance through the trailer section; its fields are relayed, not interpreted."""
        if state == _TRAILER:
            if c == 13:
                return _END_LF
            if c == 10:
                raise BadRequest("invalid chunked trailer")
            return _TRAILER_LINE
        if state == _TRAILER_LINE:
            if c == 13:
                return _TRAILER_LF
            if c == 10:
                raise BadRequest("invalid chunked trailer")
            return _TRAILER_LINE
        if c != 10:
            raise BadRequest("invalid chunked trailer")
        return _TRAILER if state == _TRAILER_LF else _DONE


_ABSOLUTE = re.compile(
    rb"[A-Za-z][A-Za-z0-9+.\-]*://"
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%\-]+)(?::[0-9]*)?")


def _decode(raw) -> str:
    """Bytes from the wire as str: UTF-8 where valid, other bytes kept as surrogates."""
    return raw.decode("utf-8", "surrogateescape")


def _pop_segment(u: bytearray):
    """Drop the last path segment before a trailing "/..", as nginx does."""
    j = len(u) - 4
    while j >= 0 and u[j] != 47:
        j -= 1
    if j < 0:
        raise BadRequest("URI climbs above the root")
    del u[j + 1:]


def split_target(target: bytes):
    """Split a request target into ($uri decoded and normalised, $args, $request_uri)."""
    if type(target) is not bytes:
        target = bytes(target)
    if target == b"*":
        return "*", "", "*"
    if target[:1] == b"/":
        path = target
    else:
        m = _ABSOLUTE.match(target)
        if m is None:
            raise BadRequest("invalid request target")
        path = target[m.end():]
        if path[:1] != b"/":
            if path and path[:1] != b"?":
                raise BadRequest("invalid request target")
            path = b"/" + path        # empty path means "/" (RFC 9110 4.2.3)

    if b"%" not in path and b"/." not in path and b"//" not in path and b"#" not in path:
        # Nothing to decode or resolve: the common case, answered without the loop.
        uri, _, args = path.partition(b"?")
        return _decode(uri), _decode(args), _decode(path)

    # nginx's ngx_http_parse_complex_uri: decode %XX, merge slashes, resolve
    # "." and ".."; a decoded "/" or "." takes part, a decoded "%", "#" or "?"
    # is kept literally; "?" starts the args and "#" ends the URI.
    u = bytearray()
    state = 0               # 0 usual, 1 after "/", 2 after "/.", 3 after "/.."
    args = b""
    i = 0
    n = len(path)
    while i < n:
        ch = path[i]
        i += 1
        if ch == 37:        # "%"
            hi = _HEX.get(path[i]) if i < n else None
            lo = _HEX.get(path[i + 1]) if i + 1 < n else None
            if hi is None or lo is None:
                raise BadRequest("invalid %-escape in URI")
            i += 2
            ch = (hi << 4) | lo
            if ch == 0:
                raise BadRequest("%00 in URI")
            if ch == 37 or ch == 35 or ch == 63:
                u.append(ch)
                state = 0
                continue
        elif ch == 63 or ch == 35:      # "?" or "#"
            if ch == 63:
                end = path.find(b"#", i)
                args = path[i:] if end < 0 else path[i:end]
            break
        if ch == 47:        # "/"
            if state == 1:
                continue
            if state == 2:
                del u[-1]
            elif state == 3:
                _pop_segment(u)
                state = 1
                continue
            else:
                u.append(ch)
            state = 1
        elif ch == 46 and (state == 1 or state == 2):
            u.append(ch)
            state += 1
        else:
            u.append(ch)
            state = 0
    if state == 2:
        del u[-1]
    elif state == 3:
        _pop_segment(u)
    return _decode(bytes(u)), _decode(args), _decode(path)
