"""The HTTP/1.x head parser and body framing in use: compiled if built, else the twin."""

from gateway._select import load_fast

_fast = load_fast("httpparse")

if _fast is not None:
    from _fastpath.httpparse import (ChunkedDecoder, parse_request_head,  # noqa: F401
                                     parse_response_head, request_body_framing,
                                     response_body_framing, split_target)
else:
    from gateway.http.parser_py import (ChunkedDecoder, parse_request_head,  # noqa: F401
                                        parse_response_head, request_body_framing,
                                        response_body_framing, split_target)

# Heads that arrive in pieces only (gateway/http/pending_head.py): one implementation serves both.
from gateway.http.parser_py import check_request_head_lines  # noqa: E402,F401

IMPLEMENTATION = "cython" if _fast is not None else "python"

__all__ = [
    "parse_request_head", "check_request_head_lines", "request_body_framing", "parse_response_head",
    "response_body_framing", "ChunkedDecoder", "split_target", "IMPLEMENTATION",
]
