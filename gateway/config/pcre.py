"""PCRE syntax of nginx configs, translated once into Python's ``re``.

Every regex of a configuration (``location ~``, ``server_name ~``, ``rewrite``, ``if``,
``map``, ``gzip_disable``, ...) is compiled by compile_regex here, so PCRE's spellings
work everywhere: ``(?<name>...)`` and ``(?'name'...)`` named groups, ``\\k<name>``
back-references, ``\\Q...\\E`` quoting and POSIX classes such as ``[[:alpha:]]``.
A pattern Python refuses is refused in PCRE2's words (``pcre2_compile() failed: ...``).
"""

from __future__ import annotations

import re

__all__ = ["PcreError", "translate", "named_groups", "compile_regex", "refusal"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Inside [...]: POSIX classes as PCRE reads them (ASCII, as nginx's PCRE2 without UTF).
_POSIX = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "xdigit": "0-9A-Fa-f", "space": r"\t\n\v\f\r ", "blank": r"\t ", "word": r"\w",
    "punct": r"!-/:-@\[-`{-~", "cntrl": r"\x00-\x1f\x7f", "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e", "ascii": r"\x00-\x7f",
}


class PcreError(ValueError):
    """A pattern PCRE would refuse: its PCRE2 message and offset in the original pattern."""

    def __init__(self, msg: str, pos: int | None):
        super().__init__(msg)
        self.msg = msg
        self.pos = pos


def _translate(pattern: str) -> tuple[str, list[int], list[str]]:
    """(Python pattern, the original offset of each of its characters, group names)."""
    out: list[str] = []
    origins: list[int] = []
    names: list[str] = []

    def emit(text: str, origin: int) -> None:
        out.append(text)
        origins.extend([origin] * len(text))

    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1:i + 2]
            if nxt == "Q":      # \Q...\E: everything between is literal
                end = pattern.find("\\E", i + 2)
                stop = n if end < 0 else end
                for k in range(i + 2, stop):
                    emit(re.escape(pattern[k]), k)
                i = n if end < 0 else end + 2
                continue
            if nxt == "E":      # a stray \E is ignored by PCRE
                i += 2
                continue
            if nxt in ("k", "g"):
                ref = _backreference(pattern, i)
                if ref is not None:
                    name, end = ref
                    emit(f"(?P={name})", i)
                    i = end
                    continue
            emit(pattern[i:i + 2], i)
            i += 2
            continue
        if c == "[":
            i = _char_class(pattern, i, emit)
            continue
        if c == "(" and pattern.startswith("(?", i):
            opener = pattern[i + 2:i + 3]
            if opener in ("<", "'") and pattern[i + 3:i + 4] not in ("=", "!"):
                close = ">" if opener == "<" else "'"
                match = _NAME.match(pattern, i + 3)
                if match is None:
                    if pattern[i + 3:i + 4].isdigit():
                        raise PcreError("subpattern name must start with a non-digit", i + 3)
                elif pattern.startswith(close, match.end()):
                    name = match.group()
                    if name in names:
                        raise PcreError("two named subpatterns have the same name "
                                        "(PCRE2_DUPNAMES not set)", match.end() + 1)
                    names.append(name)
                    emit(f"(?P<{name}>", i)
                    i = match.end() + 1
                    continue
            elif opener == "P" and pattern[i + 3:i + 4] == "<":
                match = _NAME.match(pattern, i + 4)
                if match is not None and pattern.startswith(">", match.end()):
                    if match.group() in names:
                        raise PcreError("two named subpatterns have the same name "
                                        "(PCRE2_DUPNAMES not set)", match.end() + 1)
                    names.append(match.group())
        emit(c, i)
        i += 1
    return "".join(out), origins, names


def _backreference(pattern: str, i: int) -> tuple[str, int] | None:
    r"""``\k<name>``, ``\k'name'``, ``\k{name}``, ``\g{name}``: (name, end) or None."""
    opener = pattern[i + 2:i + 3]
    close = {"<": ">", "'": "'", "{": "}"}.get(opener)
    if close is None or (pattern[i + 1] == "g" and opener != "{"):
        return None
    match = _NAME.match(pattern, i + 3)
    if match is None or not pattern.startswith(close, match.end()):
        return None
    return match.group(), match.end() + 1


def _char_class(pattern: str, start: int, emit) -> int:
    """Copy the class opening at ``start``, POSIX names expanded; the offset after it."""
    n = len(pattern)
    i = start + 1
    emit("[", start)
    if pattern[i:i + 1] == "^":
        emit("^", i)
        i += 1
    if pattern[i:i + 1] == "]":     # a "]" first is literal in PCRE
        emit(r"\]", i)
        i += 1
    while i < n:
        c = pattern[i]
        if c == "\\":
            emit(pattern[i:i + 2], i)
            i += 2
            continue
        if c == "[" and pattern[i + 1:i + 2] == ":":
            end = pattern.find(":]", i + 2)
            name = pattern[i + 2:end] if end >= 0 else ""
            if name in _POSIX:
                emit(_POSIX[name], i)
                i = end + 2
                continue
        if c == "[":
            emit(r"\[", i)      # literal in PCRE; a nested set (FutureWarning) in Python
            i += 1
            continue
        emit(c, i)
        i += 1
        if c == "]":
            return i
    return n


def translate(pattern: str) -> str:
    """The Python spelling of a PCRE pattern (unchanged when it uses no PCRE-only syntax)."""
    return _translate(pattern)[0]


def named_groups(pattern: str) -> list[str]:
    """The names of a pattern's named groups, in order: the variables a match sets."""
    try:
        return _translate(pattern)[2]
    except PcreError:
        return []


def compile_regex(pattern: str, caseless: bool = False) -> re.Pattern:
    """Compile a config's PCRE pattern; PcreError (in PCRE2's words) if PCRE refuses it."""
    text, origins, _ = _translate(pattern)
    try:
        return re.compile(text, re.IGNORECASE if caseless else 0)
    except re.error as exc:
        pos = exc.pos
        origin = origins[pos] if pos is not None and pos < len(origins) else None
        raise _pcre_error(exc.msg, origin, pattern) from None


def _pcre_error(msg: str, pos: int | None, pattern: str) -> PcreError:
    """Python's complaint as PCRE2 words it, at PCRE2's offset where they agree."""
    if msg.startswith("missing ), unterminated subpattern"):
        return PcreError("missing closing parenthesis", None)
    if msg.startswith("unterminated character set"):
        return PcreError("missing terminating ] for character class", None)
    if msg.startswith("unbalanced parenthesis"):
        return PcreError("unmatched closing parenthesis", pos)
    if msg.startswith("nothing to repeat") or msg.startswith("multiple repeat"):
        return PcreError("quantifier does not follow a repeatable item", pos)
    if msg.startswith("min repeat greater than max repeat"):
        brace = pattern.find("}", pos or 0)
        return PcreError("numbers out of order in {} quantifier", brace if brace >= 0 else pos)
    if msg.startswith("bad character range"):
        # Python points at the range's start, PCRE2 at its end.
        end = pattern.find("-", pos or 0)
        return PcreError("range out of order in character class", end + 1 if end >= 0 else pos)
    if msg.startswith("look-behind requires fixed-width pattern"):
        found = [k for k in (pattern.find("(?<="), pattern.find("(?<!")) if k >= 0]
        return PcreError("lookbehind assertion is not fixed length", min(found, default=None))
    if msg.startswith("unknown group name") or msg.startswith("invalid group reference"):
        if pos is not None and pattern.startswith(("\\k", "\\g"), pos):
            pos += 3        # PCRE2 points at the name
        return PcreError("reference to non-existent subpattern", pos)
    if msg.startswith("unknown extension") or msg.startswith("unknown flag"):
        return PcreError("unrecognized character after (? or (?-", (pos or 0) + 1)
    return PcreError(msg, pos)


def refusal(exc: PcreError, pattern: str) -> str:
    """nginx's message for a refused pattern (ngx_regex_compile)."""
    if exc.pos is None or exc.pos >= len(pattern):
        return f'pcre2_compile() failed: {exc.msg} in "{pattern}"'
    return f'pcre2_compile() failed: {exc.msg} in "{pattern}" at "{pattern[exc.pos:]}"'
