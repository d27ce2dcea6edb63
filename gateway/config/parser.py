"""Turn configuration tokens into a tree of directives, following ``include``."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from gateway.config import directives as table
from gateway.config.lexer import Token, tokenize
from gateway.errors import ConfigError


@dataclass
class Directive:
    """One directive as written: name, arguments, place, and its block if any."""

    name: str
    args: list[str]
    file: str
    line: int
    block: list[Directive] | None = None
    end_line: int | None = None   # line of the block's closing "}"
    spec: table.Spec | None = field(default=None, repr=False, compare=False)


@dataclass
class ParsedConfig:
    """The directive tree plus every file read, in order, for ``-T``."""

    tree: list[Directive]
    files: list[tuple[str, str]]


def read_text(path: str, file: str | None = None, line: int | None = None) -> str:
    """Read a config file, wrapping OS errors in nginx's open() wording."""
    try:
        # newline="": nginx counts lines by LF alone and keeps a CR inside quotes;
        # universal newlines would turn a bare CR into a line of its own.
        with open(path, encoding="utf-8", errors="replace", newline="") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f'open() "{path}" failed ({exc.errno}: {exc.strerror})',
                          file, line) from exc
    except ValueError as exc:       # a NUL in the path: no file can have that name
        shown = path.replace("\0", "\\0")
        raise ConfigError(f'open() "{shown}" failed (22: Invalid argument)', file, line) from exc


class Parser:
    """Parses one main file (and what it includes) against the directive table."""

    # nginx has no limit and fails when it runs out of file descriptors; a
    # file that includes itself should get a clear answer instead.
    MAX_INCLUDE_DEPTH = 32
    # nginx has no limit either; ours keeps the parser and the builder, which
    # recurse into blocks, well inside Python's recursion limit.
    MAX_BLOCK_DEPTH = 100

    def __init__(self, conf_dir: str):
        self.conf_dir = conf_dir
        self.files: list[tuple[str, str]] = []
        self.end_line = 0
        self.depth = 0
        self.block_depth = 0

    def parse_text(self, text: str, file: str, context: str, seen: set[str]) -> list[Directive]:
        """Parse a whole file's text in ``context``; it must end at end of file."""
        self.files.append((file, text))
        tokens = tokenize(text, file)
        return self._block(tokens, 0, file, context, seen, top=True)[1]

    def parse_file(self, path: str, context: str, seen: set[str],
                   file: str | None = None, line: int | None = None) -> list[Directive]:
        """Read and parse one file."""
        return self.parse_text(read_text(path, file, line), path, context, seen)

    def _block(self, tokens: list[Token], pos: int, file: str, context: str,
               seen: set[str], top: bool) -> tuple[int, list[Directive]]:
        out: list[Directive] = []
        words: list[Token] = []
        while True:
            tok = tokens[pos]
            pos += 1
            if not tok.special:
                words.append(tok)
                continue
            if tok.text == "":                      # end of file
                if words:
                    raise ConfigError('unexpected end of file, expecting ";" or "}"',
                                      file, tok.line)
                if not top:
                    raise ConfigError('unexpected end of file, expecting "}"', file, tok.line)
                return pos, out
            if tok.text == "}":
                if words or top:
                    raise ConfigError('unexpected "}"', file, tok.line)
                self.end_line = tok.line
                return pos, out
            if not words:
                raise ConfigError(f'unexpected "{tok.text}"', file, tok.line)
            name, line = words[0].text, words[0].line
            args = [w.text for w in words[1:]]
            words = []
            opens = tok.text == "{"
            if context in table.FREE_FORM and not (
                    name == "include" and context != table.SPLIT_CLIENTS
                    and (context not in (table.MAP, table.GEO) or len(args) == 1)):
                # types, map, split_clients and geo blocks hold "key value ..." lines.
                if opens:
                    raise ConfigError('unexpected "{"', file, tok.line)
                out.append(Directive(name, args, file, line))
                continue
            spec = table.check(name, args, opens, context, seen, file, line)
            if name == "include":
                out.extend(self._include(args[0], context, seen, file, line))
                continue
            node = Directive(name, args, file, line, spec=spec)
            if opens:
                if self.block_depth >= self.MAX_BLOCK_DEPTH:
                    raise ConfigError(f'blocks nested too deeply (more than {self.MAX_BLOCK_DEPTH})',
                                      file, tok.line)
                self.block_depth += 1
                pos, node.block = self._block(tokens, pos, file, spec.block, set(), top=False)
                self.block_depth -= 1
                node.end_line = self.end_line
            out.append(node)

    def _include(self, pattern: str, context: str, seen: set[str],
                 file: str, line: int) -> list[Directive]:
        path = pattern if os.path.isabs(pattern) else os.path.join(self.conf_dir, pattern)
        # nginx 1.22's geo opens its include as named: no wildcards there (1.29.8 has them).
        if glob.has_magic(path) and context != table.GEO:
            # As nginx: a glob that matches nothing is not an error.
            paths = sorted(p for p in glob.glob(path) if not os.path.isdir(p))
        else:
            paths = [path]
        if self.depth >= self.MAX_INCLUDE_DEPTH:
            raise ConfigError(f'includes nested too deeply (more than {self.MAX_INCLUDE_DEPTH}) '
                              f'at "{pattern}"', file, line)
        out: list[Directive] = []
        self.depth += 1
        for p in paths:
            out.extend(self.parse_file(p, context, seen, file, line))
        self.depth -= 1
        return out


def parse(path: str, globals_text: str | None = None) -> ParsedConfig:
    """Parse the main file ``path`` (absolute), with ``-g`` directives read first."""
    parser = Parser(os.path.dirname(path))
    seen: set[str] = set()
    tree: list[Directive] = []
    if globals_text:
        tree.extend(_parse_globals(parser, globals_text, seen))
    tree.extend(parser.parse_file(path, table.MAIN, seen))
    return ParsedConfig(tree, parser.files)


def _parse_globals(parser: Parser, text: str, seen: set[str]) -> list[Directive]:
    try:
        out = parser.parse_text(text, "command line", table.MAIN, seen)
    except ConfigError as exc:
        # nginx places -g errors "in command line", without a line number.
        raise ConfigError(exc.message, "command line") from None
    parser.files.pop()
    return out
