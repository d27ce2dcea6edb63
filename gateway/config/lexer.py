"""Split nginx-style configuration text into tokens (words and ``;`` ``{`` ``}``)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import ConfigError

_SPACE = " \t\r\n"
# nginx turns these backslash pairs into one character in every word.
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "t": "\t", "r": "\r", "n": "\n"}


@dataclass(frozen=True)
class Token:
    """One word or punctuation mark, with the line it starts on."""

    text: str
    line: int
    special: bool = False     # True for an unquoted ``;``, ``{`` or ``}``
    quoted: bool = False


def _unescape(raw: str) -> str:
    out = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) and raw[i + 1] in _ESCAPES:
            out.append(_ESCAPES[raw[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokenize(text: str, file: str) -> list[Token]:
    """Return the tokens of ``text``; raise ConfigError for an unterminated quote."""
    tokens: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch in _SPACE:
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch in ";{}":
            tokens.append(Token(ch, line, special=True))
            i += 1
        elif ch in "\"'":
            start_line = line
            j = i + 1
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    if text[j + 1] == "\n":
                        line += 1
                    j += 2
                    continue
                if text[j] == "\n":
                    line += 1
                j += 1
            if j >= n:
                raise ConfigError('unexpected end of file, expecting ";" or "}"', file, line)
            tokens.append(Token(_unescape(text[i + 1:j]), start_line, quoted=True))
            i = j + 1
            # nginx wants a separator right after a closing quote.
            if i < n and text[i] not in _SPACE + ";{)":
                raise ConfigError(f'unexpected "{text[i]}"', file, line)
        else:
            start_line = line
            j = i
            variable = False
            while j < n:
                c = text[j]
                if c == "{" and variable:
                    # "${name}" is a variable, not the start of a block.
                    j += 1
                    variable = False
                    continue
                variable = False
                if c == "\\" and j + 1 < n:
                    j += 2
                    continue
                if c == "$":
                    variable = True
                    j += 1
                    continue
                # As in nginx, "}" does not end a bare word: only space, ";" and "{" do.
                if c in _SPACE or c in ";{":
                    break
                j += 1
            tokens.append(Token(_unescape(text[i:j]), start_line))
            i = j
    tokens.append(Token("", line, special=True))   # end of file marker
    return tokens
