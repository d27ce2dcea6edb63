"""The tokenizer: words, punctuation, quotes, escapes, comments, variables, lines."""

from __future__ import annotations

import pytest

from gateway.config.lexer import tokenize
from gateway.errors import ConfigError


def texts(src: str) -> list[str]:
    return [t.text for t in tokenize(src, "f")][:-1]


def test_words_and_punctuation():
    assert texts("a b;c{d}") == ["a", "b", ";", "c", "{", "d}"]  # nginx: "}" does not end a word
    assert texts("server { listen 80; }") == ["server", "{", "listen", "80", ";", "}"]


def test_special_flag_only_for_bare_punctuation():
    toks = tokenize('x ";" ;', "f")
    assert [(t.text, t.special, t.quoted) for t in toks[:-1]] == [
        ("x", False, False), (";", False, True), (";", True, False)]


def test_quotes_and_escapes():
    assert texts(r'''return 200 "a\"b\n\t\\c";''') == ["return", "200", 'a"b\n\t\\c', ";"]
    assert texts(r"""x 'it\'s' "keep \d";""") == ["x", "it's", "keep \\d", ";"]
    assert texts('x "a b c";') == ["x", "a b c", ";"]
    assert texts('x "";') == ["x", "", ";"]


def test_escapes_in_bare_words():
    # The backslash keeps ";" inside the word; nginx leaves "\;" itself untouched.
    assert texts(r"x a\;b;") == ["x", "a\\;b", ";"]
    assert texts(r"x a\tb;") == ["x", "a\tb", ";"]


def test_comments():
    assert texts("a; # comment ; {\nb;") == ["a", ";", "b", ";"]
    assert texts('x "#not";') == ["x", "#not", ";"]
    assert texts("x a#b;") == ["x", "a#b", ";"]


def test_variables_left_in_text():
    assert texts("x ${host}_a $uri;") == ["x", "${host}_a", "$uri", ";"]
    assert texts('x "${a}b";') == ["x", "${a}b", ";"]


def test_line_numbers():
    toks = tokenize('a\n\nb "x\ny"\n;\n# c\nd;', "f")
    assert [(t.text, t.line) for t in toks] == [
        ("a", 1), ("b", 3), ("x\ny", 3), (";", 5), ("d", 7), (";", 7), ("", 7)]


def test_unterminated_quote():
    with pytest.raises(ConfigError) as info:
        tokenize('a "b\n\n', "/x/f.conf")
    assert str(info.value) == 'unexpected end of file, expecting ";" or "}" in /x/f.conf:3'


def test_character_after_closing_quote():
    with pytest.raises(ConfigError) as info:
        tokenize('a "b"c;', "f")
    assert str(info.value) == 'unexpected "c" in f:1'
