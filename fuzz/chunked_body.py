"""Fuzz target: chunked bodies fed whole and in two pieces, both decoder twins compared."""

import atheris

import harness

with atheris.instrument_imports():
    from _fastpath import httpparse
    from gateway.errors import BadRequest
    from gateway.http import parser_py

SEEDS = [
    b"\x05" + b"5\r\nhello\r\nA;x=y\r\n0123456789\r\n0\r\nTrailer: 1\r\n\r\nNEXT",
    b"\x00" + b"000\r\n\r\n",
    b"\x03" + b"1 ; e\r\nx\r\nFFFFFFFFFFFFFFF\r\n",
]


def decode(module, data, cut):
    """(count, payload) per feed, then done, or the error class where decoding stopped."""
    decoder = module.ChunkedDecoder()
    results = []
    try:
        for piece in (data[:cut], data[cut:]):
            count, pieces = decoder.feed(piece, True)
            results.append((count, b"".join(pieces)))
            if decoder.done:
                break
    except BadRequest as exc:
        results.append((type(exc).__name__, str(exc)))
    return results, decoder.done


def test_one_input(data: bytes):
    if not data:
        return
    cut, body = data[0], data[1:]
    python = decode(parser_py, body, cut)
    assert decode(httpparse, body, cut) == python, (body, cut)
    whole = decode(parser_py, body, len(body))
    if whole[1]:        # a complete body: the same payload and length whichever the cut
        assert python[1]
        assert sum(r[0] for r in python[0]) == whole[0][0][0]
        assert b"".join(r[1] for r in python[0]) == whole[0][0][1]


if __name__ == "__main__":
    harness.run(test_one_input, SEEDS)
