"""The compiled parser's fast paths against the twin, on input aimed at their edges.

_fastpath/httpparse.pyx answers common input (plain origin-form targets, valid
head lines, ordinary header lists) without its general code; these tests
generate input around each fast path's conditions and require the same result,
or the same exception class and message, as gateway/http/parser_py.py.
"""

import itertools
import random

from _fastpath import httpparse
from gateway.http import parser_py


def outcome(fn, *args):
    """fn's result, or the class and message of what it raised."""
    try:
        return "returned", fn(*args)
    except Exception as exc:    # noqa: BLE001 - compared, not handled
        return "raised", type(exc), str(exc)


def same(fn_name, *args):
    expected = outcome(getattr(parser_py, fn_name), *args)
    got = outcome(getattr(httpparse, fn_name), *args)
    assert got == expected, args
    return got


# split_target ---------------------------------------------------------------

def test_targets_every_short_combination():
    """Every target of up to six bytes over the characters the fast path looks at."""
    for size in range(7):
        for chars in itertools.product(b"/.?#a", repeat=size):
            same("split_target", b"/" + bytes(chars))


def test_targets_random():
    rng = random.Random(31)
    alphabet = b"/./.?#%2eFa~-_\x00\x01 \x7f\x80\xc3\xa9\xff"
    for _ in range(20000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        same("split_target", b"/" + data)
        same("split_target", data)


def test_targets_common_forms():
    for target in (b"/", b"/small", b"/static/app.js?v=3", b"/a/b/c.html", b"/.well-known/x",
                   b"/a..b/...", b"/a/..b/.c/", b"/a?", b"/?", b"/a?b?c", b"/a?b/../c",
                   b"/a?%zz", b"/a?b#c", b"/a#b", b"/caf\xc3\xa9", b"/a?caf\xc3\xa9",
                   b"/a\x00b", b"/a/.", b"/a/..", b"/a/./b", b"/a/../b", b"/a//b", b"/a/.?x",
                   b"/a/..?x", b"/a/.#x", b"/" + b"x" * 300, b"/" + b"ab/" * 100 + b"?q=1"):
        same("split_target", target)
        same("split_target", bytearray(target))


def test_plain_target_shares_one_str():
    uri, args, request_uri = httpparse.split_target(b"/small")
    assert (uri, args, request_uri) == ("/small", "", "/small")
    assert uri is request_uri
