"""The rewrite module's directives (rewrite, return, set, if, break) read into a script.

A server block's script runs before its locations are searched, a location's after the
location is chosen (nginx's server rewrite and rewrite phases).  An ``if`` inside a location
is an anonymous nested location: when its condition holds, its settings replace the
location's for the rest of the request (``settings``, built by the caller).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.config.maps import regex
from gateway.config.model import Return
from gateway.config.parser import Directive
from gateway.errors import ConfigError

# Directives that make a block's rewrite-phase script; "return" joins them when they are there.
SCRIPT_DIRECTIVES = frozenset({"rewrite", "set", "if", "break"})
REWRITE_FLAGS = ("last", "break", "redirect", "permanent")
# What nginx allows inside an "if" at server level (NGX_HTTP_SIF_CONF).
SERVER_IF_DIRECTIVES = frozenset({"rewrite", "return", "set", "break", "rewrite_log",
                                  "uninitialized_variable_warn", "include"})
_FILE_TESTS = {"-f", "-d", "-e", "-x", "!-f", "!-d", "!-e", "!-x"}
_COMPARISONS = {"=", "!="}
_MATCHES = {"~", "~*", "!~", "!~*"}


@dataclass
class RewriteOp:
    """``rewrite REGEX REPLACEMENT [FLAG]``."""

    regex: re.Pattern
    pattern: str
    replacement: str              # template text; a final "?" already removed
    flag: str = ""                # "", last, break, redirect, permanent
    keep_args: bool = True        # False when the replacement ended in "?"
    redirect: int = 0             # 301/302 when the answer is a redirect
    file: str | None = None
    line: int | None = None


@dataclass
class ReturnOp:
    """``return`` inside a script."""

    answer: Return


@dataclass
class SetOp:
    """``set $name VALUE``."""

    name: str
    value: str                    # template text


@dataclass
class BreakOp:
    """``break``: the script stops here."""


@dataclass
class Condition:
    """One ``if (...)`` condition, as nginx's ngx_http_rewrite_if_condition reads it."""

    kind: str                     # "variable", "=", "!=", "~", "!~", "-f" ... "!-x"
    subject: str                  # template: the variable, or the path for file tests
    operand: str | None = None    # template for = and !=
    regex: re.Pattern | None = None


@dataclass
class IfOp:
    """``if (CONDITION) { ... }``: its own script, and at location level its settings."""

    condition: Condition
    script: Script
    settings: object = None       # LocationSettings of the anonymous location, or None
    location: object = None       # the Location those settings belong to


@dataclass
class Script:
    """The rewrite-phase script of one server, location or if block."""

    ops: list = field(default_factory=list)
    rewrite_log: bool = False
    file: str | None = None
    line: int | None = None


def has_script(block: list[Directive]) -> bool:
    """Whether a block has rewrite-module directives other than a lone ``return``."""
    return any(d.name in SCRIPT_DIRECTIVES for d in block)


class ScriptReader:
    """Reads scripts; the builder supplies template checks, ``return`` and if-settings."""

    def __init__(self, check_template, read_return, if_settings):
        self.check_template = check_template     # (text, file, line) -> None or ConfigError
        self.read_return = read_return           # Directive -> Return
        self.if_settings = if_settings           # (if Directive) -> (settings, location)

    def script(self, block: list[Directive], at_server: bool, rewrite_log: bool,
               in_if: bool = False) -> Script:
        """The script of a block: its rewrite directives, in order."""
        script = Script(rewrite_log=rewrite_log)
        for d in block:
            if d.name == "rewrite_log":
                script.rewrite_log = d.args[0] == "on"
        for d in block:
            if in_if and at_server and d.name not in SERVER_IF_DIRECTIVES:
                raise ConfigError(f'"{d.name}" directive is not allowed here', d.file, d.line)
            if d.name == "rewrite":
                script.ops.append(self.rewrite(d))
            elif d.name == "return":
                script.ops.append(ReturnOp(self.read_return(d)))
            elif d.name == "set":
                script.ops.append(self.set(d))
            elif d.name == "break":
                script.ops.append(BreakOp())
            elif d.name == "if":
                condition = self.condition(d)
                body = self.script(d.block, at_server, script.rewrite_log, in_if=True)
                op = IfOp(condition, body)
                if not at_server:
                    op.settings, op.location = self.if_settings(d)
                script.ops.append(op)
        return script

    def rewrite(self, d: Directive) -> RewriteOp:
        pattern, replacement = d.args[0], d.args[1]
        flag = d.args[2] if len(d.args) > 2 else ""
        if flag and flag not in REWRITE_FLAGS:
            raise ConfigError(f'invalid parameter "{flag}"', d.file, d.line)
        compiled = regex(pattern, False, d.file, d.line)
        redirect = 301 if flag == "permanent" else 302 if flag == "redirect" else 0
        if not redirect and replacement.startswith(("http://", "https://", "$scheme")):
            # nginx answers a replacement that names a scheme with a redirect, flags or not.
            redirect = 301 if flag == "permanent" else 302
            flag = flag or "redirect"
        keep_args = not replacement.endswith("?")
        if not keep_args:
            replacement = replacement[:-1]
        self.check_template(replacement, d.file, d.line)
        return RewriteOp(compiled, pattern, replacement, flag, keep_args, redirect,
                         d.file, d.line)

    def set(self, d: Directive) -> SetOp:
        name = d.args[0]
        if len(name) < 2 or name[0] != "$":
            raise ConfigError(f'invalid variable name "{name}"', d.file, d.line)
        from gateway.http.variables import is_builtin
        if is_builtin(name[1:]):
            raise ConfigError(f'the duplicate "{name[1:]}" variable', d.file, d.line)
        self.check_template(d.args[1], d.file, d.line)
        return SetOp(name[1:], d.args[1])

    def condition(self, d: Directive) -> Condition:
        f, ln = d.file, d.line
        words = list(d.args)
        invalid = lambda word: ConfigError(f'invalid condition "{word}"', f, ln)  # noqa: E731
        if not words[0].startswith("("):
            raise invalid(words[0])
        cur = 1 if words[0] == "(" else 0
        if words[0] != "(":
            words[0] = words[0][1:]
        last = len(words) - 1
        if not words[last].endswith(")"):
            raise invalid(words[last])
        if words[last] == ")":
            last -= 1
        else:
            words[last] = words[last][:-1]
        if cur > last or cur >= len(words):
            raise invalid(")")
        first = words[cur]
        if len(first) > 1 and first.startswith("$"):
            if cur != last and cur + 2 != last:
                raise invalid(first)
            self.check_template(first, f, ln)
            if cur == last:
                return Condition("variable", first)
            op, operand = words[cur + 1], words[last]
            if op in _COMPARISONS:
                self.check_template(operand, f, ln)
                return Condition(op, first, operand)
            if op in _MATCHES:
                compiled = regex(operand, op.endswith("*"), f, ln)
                return Condition(op.rstrip("*"), first, regex=compiled)
            raise ConfigError(f'unexpected "{op}" in condition', f, ln)
        if first.startswith(("-", "!")):
            if cur + 1 != last or first not in _FILE_TESTS:
                raise invalid(first)
            self.check_template(words[last], f, ln)
            return Condition(first, words[last])
        raise invalid(first)
