"""What every fuzz target shares: outcomes to compare, and a libFuzzer run seeded from its examples.

A target is run as ``python fuzz/TARGET.py [libFuzzer options] [corpus dirs]``,
e.g. ``-max_total_time=60``; without a corpus directory it starts from its own
seeds, written to a temporary one.  A crash is an uncaught exception: an error
class the project does not raise on purpose, or an AssertionError where the
twins disagree.  Only the Python code is instrumented for coverage; the
compiled twins are compared as black boxes.
"""

import os
import sys
import tempfile

import atheris

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def outcome(call, *args, errors):
    """The value, or the exception class, its HTTP status and message; other exceptions propagate."""
    try:
        return ("ok", call(*args))
    except errors as exc:
        return ("error", type(exc).__name__, getattr(exc, "status", None), str(exc))


def run(test_one_input, seeds):
    """Fuzz test_one_input with libFuzzer's command line; seeds start the corpus if none is given."""
    argv = list(sys.argv)
    with tempfile.TemporaryDirectory(prefix="fuzz-corpus-") as corpus:
        if not any(not arg.startswith("-") for arg in argv[1:]):
            for i, seed in enumerate(seeds):
                with open(os.path.join(corpus, f"seed-{i}"), "wb") as fh:
                    fh.write(seed)
            argv.append(corpus)
        atheris.Setup(argv, test_one_input)
        atheris.Fuzz()
