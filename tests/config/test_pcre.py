"""PCRE syntax translated into Python's re (gateway/config/pcre.py), and refusals as nginx words them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config.pcre import PcreError, compile_regex, named_groups, refusal, translate
from tests.config.conftest import HEADER
from tests.config.nginx_check import assert_refused_like_nginx, nginx_refusal

# A small regex grammar, rendered twice: as PCRE writes it and as Python's re must receive it.
_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
_LITERAL = st.sampled_from(["a", "b", "x", "/", ".", "-", "\\.", "\\(", "\\)", "\\[", "\\\\",
                            "\\d", "\\w", "<", ">", "'", "?", ":"]).map(
    lambda t: t if t not in ("?", "(") else "\\" + t)
_CLASS_ITEM = st.sampled_from(["a", "z", "0-9", "(", "?", "<", "'", ")", "\\]", "\\\\", ".",
                               "[", "\\d"])


def _same(text):
    return (text, text)


@st.composite
def _piece(draw, depth=0):
    kind = draw(st.sampled_from(["literal", "class", "escaped_paren", "group", "named", "quoted",
                                 "lookbehind", "noncapture", "posix"]
                                if depth < 3 else ["literal", "class", "escaped_paren"]))
    if kind == "literal":
        return _same(draw(_LITERAL))
    if kind == "class":
        items = "".join(draw(st.lists(_CLASS_ITEM, min_size=1, max_size=4)))
        negate = draw(st.sampled_from(["", "^"]))
        # A "[" inside a class is literal in PCRE: Python gets it escaped.
        python = "[" + negate + items.replace("[", "\\[") + "]"
        return ("[" + negate + items + "]", python)
    if kind == "escaped_paren":
        # "\(?<x>" is an optional literal "(" followed by "<x>": nothing to translate.
        name = draw(_NAMES)
        return _same(f"\\(?<{name}>")
    if kind == "posix":
        return ("[[:digit:]_]", "[0-9_]")
    inner = draw(st.lists(_piece(depth + 1), min_size=1, max_size=3))
    pcre = "".join(p for p, _ in inner)
    python = "".join(q for _, q in inner)
    if kind == "group":
        return (f"({pcre})", f"({python})")
    if kind == "noncapture":
        return (f"(?:{pcre})", f"(?:{python})")
    if kind == "lookbehind":
        sign = draw(st.sampled_from(["=", "!"]))
        return (f"(?<{sign}x)", f"(?<{sign}x)")
    name = draw(_NAMES)
    if kind == "named":
        return (f"(?<{name}>{pcre})", f"(?P<{name}>{python})")
    return (f"(?'{name}'{pcre})", f"(?P<{name}>{python})")


@st.composite
def _pattern(draw):
    pieces = draw(st.lists(_piece(), min_size=1, max_size=5))
    return "".join(p for p, _ in pieces), "".join(q for _, q in pieces)


@settings(max_examples=400, deadline=None)
@given(_pattern())
def test_translation_gives_the_python_spelling(pair):
    pcre, python = pair
    try:
        translated = translate(pcre)
    except PcreError:       # a name used twice: Python refuses it as PCRE does
        with pytest.raises(re.error, match="redefinition of group name"):
            re.compile(python)
        return
    assert translated == python


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab()?<>='!:\\[]^-P", max_size=20))
def test_translation_is_idempotent(text):
    try:
        once = translate(text)
    except PcreError:
        return
    assert translate(once) == once


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30).filter(lambda t: not any(
    s in t for s in ("(?<", "(?'", "(?P<", "\\", "[[:", "[^[:", "[", "]"))))
def test_patterns_without_pcre_syntax_are_unchanged(text):
    assert translate(text) == text


@settings(max_examples=300, deadline=None)
@given(_pattern(), st.text(alphabet="abx/.-()[]\\<>'?:0123456789_", max_size=12))
def test_names_and_matches_agree_with_python_spelling(pair, subject):
    pcre, python = pair
    try:
        expected = re.compile(python)
    except re.error:
        with pytest.raises(PcreError):
            compile_regex(pcre)
        return
    got = compile_regex(pcre)
    assert named_groups(pcre) == list(expected.groupindex)
    a, b = got.search(subject), expected.search(subject)
    assert (a and (a.span(), a.groupdict())) == (b and (b.span(), b.groupdict()))


def test_named_groups_of_each_spelling():
    assert named_groups(r"^(?<sub>.+)\.(?'dom'[^.]+)\.(?P<tld>com)$") == ["sub", "dom", "tld"]
    assert named_groups(r"\(?<no>(?<=x)(?<!y)[(?<nor>]") == []
    match = compile_regex(r"^(?<sub>.+)\.example\.com$", True).search("WWW.Example.com")
    assert match.group("sub") == "WWW"


def test_backreferences_quoting_and_posix_classes():
    assert compile_regex(r"^(?<w>\w+)-\k<w>$").search("ab-ab")
    assert not compile_regex(r"^(?<w>\w+)-\k'w'$").search("ab-ac")
    assert compile_regex(r"^(?<w>a)\g{w}$").search("aa")
    assert compile_regex(r"^\Q(a.b)\E$").search("(a.b)")
    assert not compile_regex(r"^\Q(a.b)\E$").search("(axb)")
    assert compile_regex(r"^[[:alpha:]]+[[:digit:]]$").search("abc1")
    assert compile_regex(r"^[]a]$").search("]")


# Refusals: PCRE2's words and offsets, as `nginx -t` prints them --------------------

_BAD = ["(", ")a", "*a", "a{2,1}", "[a", "(?<n>a)(?<n>b)", "(?<1n>a)", "x(?<=a+)y",
        r"\k<zz>", "(?z)", "[b-a]"]


@pytest.mark.nginx
@pytest.mark.parametrize("pattern", _BAD)
@pytest.mark.parametrize("where", ["location ~ \"{p}\" {{ }}", "server_name \"~{p}\";",
                                   "rewrite \"{p}\" /x;", "if ($uri ~ \"{p}\") { }"])
def test_bad_regex_refused_as_nginx(tmp_path, pattern, where):
    if where.startswith("if"):
        where = where.replace("{p}", pattern)
    else:
        where = where.format(p=pattern)
    conf = tmp_path / "main.conf"
    conf.write_text(HEADER.format(tmp=tmp_path)
                    + f"http {{\n server {{\n  listen 127.0.0.1:18999;\n  {where}\n }}\n}}\n")
    assert_refused_like_nginx(tmp_path, conf)


@pytest.mark.nginx
def test_pcre_spellings_load_in_both(tmp_path):
    from gateway.config import load_config
    conf = tmp_path / "main.conf"
    conf.write_text(HEADER.format(tmp=tmp_path) + (
        "http {\n server {\n  listen 127.0.0.1:18999;\n"
        "  server_name ~^(?<sub>.+)\\.example\\.com$ \"~^(?'other'.+)\\.example\\.org$\";\n"
        "  location ~ ^/(?<a>[[:alnum:]]+)/(?'b'.*)$ { return 200 \"$a $b $sub $other\"; }\n"
        "  rewrite \"^/\\Q(x)\\E/(?<c>.*)\" /$c;\n"
        " }\n}\n"))
    assert nginx_refusal(tmp_path, conf) == (0, None)
    load_config(str(conf), str(tmp_path))


def test_refusal_wording_without_offset():
    with pytest.raises(PcreError) as info:
        compile_regex("(a")
    assert refusal(info.value, "(a") == 'pcre2_compile() failed: missing closing parenthesis in "(a"'
