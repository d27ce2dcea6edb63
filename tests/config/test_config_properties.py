"""Property tests of configuration loading on arbitrary text and mutated real configurations.

Whatever the text, load_config() gives a Config or raises ConfigError, and a
ConfigError names the file and the line (nginx's "... in FILE:LINE"), a line
that exists in that file.  Seeds: the embedded default, the worked example
and samples/many_directives.conf.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import DEFAULT_CONFIG, DEFAULT_DIR, load_config
from gateway.config.directives import TABLE
from gateway.errors import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = [pathlib.Path(DEFAULT_CONFIG), ROOT / "examples" / "front-proxy" / "gateway.conf",
         pathlib.Path(__file__).with_name("samples") / "many_directives.conf"]
SEED_TEXTS = [path.read_text() for path in SEEDS]


@pytest.fixture(scope="module")
def prefix():
    """A prefix holding mime.types and html/, as the seeds expect; main.conf is written per example."""
    folder = tempfile.mkdtemp(prefix="config-properties-")
    shutil.copy(os.path.join(DEFAULT_DIR, "mime.types"), folder)
    os.mkdir(os.path.join(folder, "html"))
    yield folder
    shutil.rmtree(folder)


# Errors about the whole configuration, which nginx reports without a place
# (ngx_event_init_conf: 'no "events" section in configuration'); we use its words.
WITHOUT_PLACE = {'no "events" section in configuration'}


def load(prefix: str, data: bytes):
    """Load data as prefix/main.conf: the Config, or the ConfigError, which must carry file:line."""
    path = os.path.join(prefix, "main.conf")
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        return load_config(path, prefix)
    except ConfigError as exc:
        if exc.message in WITHOUT_PLACE:
            assert (exc.file, exc.line) == (None, None)
            return exc
        assert exc.file is not None and exc.line is not None, str(exc)
        assert str(exc).endswith(f" in {exc.file}:{exc.line}")
        if exc.file == path:
            assert 1 <= exc.line <= data.count(b"\n") + 1, str(exc)
        return exc


# Pieces that mean something to the lexer, the parser or the builder.
DIRECTIVES = sorted(TABLE)
WORDS = ["on", "off", "0", "1", "-1", "65536", "99999999999999999999", "1k", "10m", "5s", "1h30m",
         "0x10", "default", "default_server", "$uri", "$host", "${remote_addr}", "${", "$",
         "~", "~*", "^~", "=", "@named", "/", "/a/", "http://app", "http://127.0.0.1:1/x",
         "unix:/tmp/s", "[::1]:80", "*:80", "127.0.0.1:99999", "weight=0", "max_fails=x",
         "consistent", "backup", "=404", "(", ")", "(?<n>x)", "\\", "'", '"', "%", "*", "é",
         "\x00", "\x7f", "include", "mime.types", "*.conf", "http", "server", "location"]
PUNCT = [";", "{", "}", " ", "\t", "\n", "\r\n", "#", '"', "'", "\\", "$", "\\\n"]

piece = st.one_of(st.sampled_from(DIRECTIVES), st.sampled_from(WORDS), st.sampled_from(PUNCT),
                  st.text(max_size=3))


@st.composite
def mutated_seed(draw):
    """One seed with one to six mutations: pieces inserted, spans deleted, lines moved."""
    text = draw(st.sampled_from(SEED_TEXTS))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "insert", "delete", "duplicate", "swap", "truncate"]))
        at = draw(st.integers(0, len(text)))
        if op == "insert":
            text = text[:at] + draw(piece) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif op == "truncate":
            text = text[:at]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "duplicate":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@given(st.lists(piece, max_size=40).map("".join))
def test_any_text(prefix, text):
    load(prefix, encode(text))


@given(st.binary(max_size=200))
def test_any_bytes(prefix, data):
    load(prefix, data)


@given(mutated_seed())
def test_mutated_real_configs(prefix, text):
    load(prefix, encode(text))


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.name)
def test_seeds_load(prefix, seed):
    """The seeds themselves are valid: the mutations start from working configurations."""
    assert not isinstance(load(prefix, seed.read_bytes()), ConfigError)


@pytest.mark.parametrize("block", ["location / {", "if ($a) {", "types {", "location = /x {"])
def test_deep_nesting_names_the_place(prefix, block):
    """Found by this module: "blocks nested too deeply" had no file:line."""
    deep = f"events {{}}\nhttp {{\nserver {{\n" + f"{block}\n" * 300 + "}\n" * 302
    assert isinstance(load(prefix, deep.encode()), ConfigError)
