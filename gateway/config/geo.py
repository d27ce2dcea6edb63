"""``geo`` blocks (ngx_http_geo_module): read into GeoBlock, with nginx 1.22's warnings and errors.

Networks go into a binary trie built as nginx builds its radix trees (the first six levels
preallocated), so that duplicates, deletions and their warnings come out as nginx's do; the
trie is then flattened into per-prefix-length tables for the request-time lookup
(gateway/http/geo.py). ``ranges`` entries are kept per /16 as nginx keeps them.
"""

from __future__ import annotations

import functools

from gateway.config.model import GeoBlock
from gateway.config.parser import Directive
from gateway.errors import ConfigError

INADDR_NONE = 0xFFFFFFFF
V4, V6 = 4, 6

# nginx preallocates the first 6 levels of a radix tree on amd64 (4K pages, 32-byte nodes);
# a deletion answers differently for a preallocated node and for none.
_PREALLOCATED = 6


# nginx's address parsers (src/core/ngx_inet.c), stricter and laxer than Python's: "1.2.3."
# and "01.2.3.4" are addresses, "255.255.255.255" is not (it is INADDR_NONE).

def inet_addr(text: str) -> int:
    """ngx_inet_addr: dotted quad -> int, INADDR_NONE when invalid."""
    addr = octet = dots = 0
    for c in text:
        if "0" <= c <= "9":
            octet = octet * 10 + ord(c) - 48
            if octet > 255:
                return INADDR_NONE
        elif c == ".":
            addr = (addr << 8) + octet
            octet = 0
            dots += 1
        else:
            return INADDR_NONE
    if dots == 3:
        return ((addr << 8) + octet) & 0xFFFFFFFF
    return INADDR_NONE


def inet6_addr(text: str) -> int | None:
    """ngx_inet6_addr: IPv6 text -> 128-bit int, None when invalid."""
    if not text:
        return None
    words: list[int] = []
    zero = None                 # index in words where "::" stands
    digit = None                # where the current group began, for a dotted IPv4 tail
    nibbles = word = 0
    pos = 1 if text[0] == ":" else 0
    length = len(text)
    while pos < length:
        c = text[pos]
        pos += 1
        if c == ":":
            if nibbles:
                digit = pos
                words.append(word)
                if len(words) < 8:
                    nibbles = word = 0
                    continue
            elif zero is None:
                digit = pos
                zero = len(words)
                continue
            return None
        if c == "." and nibbles:
            if 8 - len(words) < 2 or digit is None:
                return None
            v4 = inet_addr(text[digit:])
            if v4 == INADDR_NONE:
                return None
            words += [v4 >> 16, v4 & 0xFFFF]
            break
        nibbles += 1
        if nibbles > 4:
            return None
        if "0" <= c <= "9":
            word = word * 16 + ord(c) - 48
        elif "a" <= c.lower() <= "f":
            word = word * 16 + ord(c.lower()) - 87
        else:
            return None
    else:
        if nibbles == 0 and zero is None:
            return None
        words.append(word)
    if len(words) < 8:
        if zero is None:
            return None
        words[zero:zero] = [0] * (8 - len(words))
    elif zero is not None:
        return None
    value = 0
    for w in words:
        value = (value << 16) | w
    return value


@functools.lru_cache(maxsize=4096)
def parse_addr(text: str) -> tuple[int, int] | None:
    """ngx_parse_addr: (4, int) or (6, int), None when the text is no address."""
    v4 = inet_addr(text)
    if v4 != INADDR_NONE:
        return V4, v4
    v6 = inet6_addr(text)
    return (V6, v6) if v6 is not None else None


def parse_addr_port(text: str) -> tuple[int, int] | None:
    """ngx_parse_addr_port: an address, maybe with a port (dropped): "[::1]:80", "1.2.3.4:80"."""
    found = parse_addr(text)
    if found is not None:
        return found
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or end == len(text) - 1 or text[end + 1] != ":":
            return None
        host, port = text[1:end], text[end + 2:]
    else:
        host, colon, port = text.partition(":")
        if not colon:
            return None
    if not port.isdigit() or not port.isascii() or not 1 <= int(port) <= 65535:
        return None
    return parse_addr(host)


def _cidr(text: str) -> tuple[int, int, int, bool] | None:
    """ngx_ptocidr: (family, address, prefix length, low bits were set), None if invalid."""
    addr_text, slash, mask = text.partition("/")
    v4 = inet_addr(addr_text)
    if v4 != INADDR_NONE:
        family, addr, bits = V4, v4, 32
    else:
        v6 = inet6_addr(addr_text)
        if v6 is None:
            return None
        family, addr, bits = V6, v6, 128
    if not slash:
        return family, addr, bits, False
    if not mask or not mask.isdigit() or not mask.isascii() or int(mask) > bits:
        return None
    shift = int(mask)
    masked = addr >> (bits - shift) << (bits - shift)
    return family, masked, shift, masked != addr


def cidr_value(text: str, file: str, line: int, warnings: list[str]) -> tuple[int, int, int]:
    """ngx_http_geo_cidr_value: (family, address, prefix length) of a network or address."""
    if text == "255.255.255.255":
        return V4, INADDR_NONE, 32
    found = _cidr(text)
    if found is None:
        raise ConfigError(f'invalid network "{text}"', file, line)
    family, addr, length, low_bits = found
    if low_bits:
        warnings.append(f"low address bits of {text} are meaningless in {file}:{line}")
    return family, addr, length


# The radix tree (src/core/ngx_radix_tree.c), as far as geo can tell it apart --------------

_LEFT, _RIGHT, _VALUE, _PARENT = range(4)


class _Radix:
    """A binary trie of networks; nodes are [left, right, value, parent], value None if none."""

    def __init__(self, bits: int):
        self.bits = bits
        self.root: list = [None, None, None, None]
        for depth in range(1, _PREALLOCATED + 1):
            for prefix in range(1 << depth):
                self.insert(prefix << (bits - depth), depth, None)

    def _bit(self, key: int, depth: int) -> int:
        return _RIGHT if key >> (self.bits - 1 - depth) & 1 else _LEFT

    def insert(self, key: int, length: int, value) -> bool:
        """Give the network a value; False (nginx's NGX_BUSY) if it has one already."""
        node = self.root
        for depth in range(length):
            side = self._bit(key, depth)
            if node[side] is None:
                node[side] = [None, None, None, node]
            node = node[side]
        if node[_VALUE] is not None:
            return False
        node[_VALUE] = value
        return True

    def delete(self, key: int, length: int) -> bool:
        """Remove the network's value; False (nginx's NGX_ERROR) when there is none to remove."""
        node = self.root
        for depth in range(length):
            node = node[self._bit(key, depth)]
            if node is None:
                return False
        if node[_LEFT] is not None or node[_RIGHT] is not None:
            if node[_VALUE] is None:
                return False
            node[_VALUE] = None
            return True
        # A leaf goes, and so do the parents it leaves empty (a preallocated one too).
        while node[_PARENT] is not None:
            parent = node[_PARENT]
            parent[_RIGHT if parent[_RIGHT] is node else _LEFT] = None
            node = parent
            if node[_LEFT] is not None or node[_RIGHT] is not None or node[_VALUE] is not None:
                break
        return True

    def find(self, key: int):
        """The value of the longest network holding ``key``."""
        node, value, depth = self.root, None, 0
        while node is not None:
            if node[_VALUE] is not None:
                value = node[_VALUE]
            node = node[self._bit(key, depth)] if depth < self.bits else None
            depth += 1
        return value

    def tables(self) -> dict[int, dict[int, str]]:
        """prefix length -> {network >> (bits - length): value}, for every valued node."""
        out: dict[int, dict[int, str]] = {}
        stack = [(self.root, 0, 0)]
        while stack:
            node, prefix, depth = stack.pop()
            if node[_VALUE] is not None:
                out.setdefault(depth, {})[prefix] = node[_VALUE]
            for side, bit in ((_LEFT, 0), (_RIGHT, 1)):
                if node[side] is not None:
                    stack.append((node[side], prefix << 1 | bit, depth + 1))
        return out


# The block ------------------------------------------------------------------

def variable_name(d: Directive) -> str:
    """The geo's own variable, without "$"; checks every ``$name`` argument as nginx does."""
    for name in d.args:
        if not name or name[0] != "$":
            raise ConfigError(f'invalid variable name "{name}"', d.file, d.line)
        if len(name) == 1:
            raise ConfigError('invalid variable name "$"', d.file, d.line)
    return d.args[-1][1:]


class _Reader:
    """The state ngx_http_geo_conf_ctx_t keeps while the block is read."""

    def __init__(self, warnings: list[str]):
        self.warnings = warnings
        self.ranges = False
        self.trees: tuple[_Radix, _Radix] | None = None     # made by the first network entry
        self.low: dict[int, list[list]] | None = None      # ranges: /16 -> [[start, end, value]]
        self.default: str | None = None                    # ranges' default
        self.proxies: list[tuple[int, int, int]] = []
        self.proxy_recursive = False

    def warn(self, message: str, e: Directive) -> None:
        self.warnings.append(f"{message} in {e.file}:{e.line}")

    def entry(self, e: Directive) -> None:
        words = [e.name, *e.args]
        if len(words) == 1 and words[0] == "ranges":
            if self.trees is not None:
                raise ConfigError('the "ranges" directive must be the first directive inside '
                                  '"geo" block', e.file, e.line)
            self.ranges = True
            return
        if len(words) == 1 and words[0] == "proxy_recursive":
            self.proxy_recursive = True
            return
        if len(words) != 2:
            raise ConfigError("invalid number of the geo parameters", e.file, e.line)
        # "include FILE" was read in place by the parser (gateway/config/parser.py).
        if words[0] == "proxy":
            self.proxies.append(cidr_value(words[1], e.file, e.line, self.warnings))
        elif self.ranges:
            self.range(words, e)
        else:
            self.network(words, e)

    # Networks (the radix trees)

    def network(self, words: list[str], e: Directive) -> None:
        if self.trees is None:
            self.trees = (_Radix(32), _Radix(128))
        key, value = words
        if key == "default":
            self.add(self.trees[0], 0, 0, value, key, e)
            self.add(self.trees[1], 0, 0, value, key, e)
            return
        net = value if key == "delete" else key
        family, addr, length = cidr_value(net, e.file, e.line, self.warnings)
        tree = self.trees[0] if family == V4 else self.trees[1]
        if key == "delete":
            if not tree.delete(addr, length):
                self.warn(f'no network "{net}" to delete', e)
            return
        self.add(tree, addr, length, value, net, e)

    def add(self, tree: _Radix, addr: int, length: int, value: str, net: str,
            e: Directive) -> None:
        if tree.insert(addr, length, value):
            return
        # nginx names the value the address finds, which a longer network may hold.
        self.warn(f'duplicate network "{net}", value: "{value}", old value: '
                  f'"{tree.find(addr)}"', e)
        tree.delete(addr, length)
        tree.insert(addr, length, value)

    # Ranges (per /16, as ngx_http_geo_add_range keeps them)

    def range(self, words: list[str], e: Directive) -> None:
        key, value = words
        if key == "default":
            if self.default is not None:
                self.warn(f'duplicate default geo range value: "{value}", old value: '
                          f'"{self.default}"', e)
            self.default = value
            return
        if self.low is None:
            self.low = {}
        net = value if key == "delete" else key
        first, dash, last = net.partition("-")
        start, end = inet_addr(first), inet_addr(last)
        if not dash or start == INADDR_NONE or end == INADDR_NONE or start > end:
            raise ConfigError(f'invalid range "{net}"', e.file, e.line)
        if key == "delete":
            if self.delete_range(start, end):
                self.warn(f'no address range "{net}" to delete', e)
            return
        for high, s, t in _slices(start, end):
            self.add_range(self.low.setdefault(high, []), high, s, t, value, net, e)

    def add_range(self, bucket: list[list], high: int, s: int, t: int, value: str, net: str,
                  e: Directive) -> None:
        """One /16's part of a range: placed, splitting an enclosing range, or refused."""
        for i in range(len(bucket) - 1, -1, -1):
            start, end, old = bucket[i]
            if t < start:
                continue
            if s > end:
                bucket.insert(i + 1, [s, t, value])
            elif s == start and t == end:
                self.warn(f'duplicate range "{net}", value: "{value}", old value: "{old}"', e)
                bucket[i][2] = value
            elif start < s and t < end:
                bucket[i][1] = s - 1
                bucket[i + 1:i + 1] = [[s, t, value], [t + 1, end, old]]
            elif s == start and t < end:
                bucket[i][0] = t + 1
                bucket.insert(i, [s, t, value])
            elif start < s and t == end:
                bucket[i][1] = s - 1
                bucket.insert(i + 1, [s, t, value])
            else:
                h = f"{high >> 8}.{high & 0xFF}"
                raise ConfigError(f'range "{net}" overlaps "{h}.{start >> 8}.{start & 0xFF}-'
                                  f'{h}.{end >> 8}.{end & 0xFF}"', e.file, e.line)
            return
        bucket.insert(0, [s, t, value])

    def delete_range(self, start: int, end: int) -> bool:
        """Remove the range from each /16 it spans; True if some part was not there."""
        missing = False
        for high, s, t in _slices(start, end):
            bucket = self.low.get(high) if self.low is not None else None
            for i, (first, last, _value) in enumerate(bucket or ()):
                if first == s and last == t:
                    del bucket[i]
                    break
            else:
                missing = True
        return missing

    def block(self, source: str | None, variable: str) -> GeoBlock:
        geo = GeoBlock(source, variable, ranges=self.ranges, proxies=self.proxies,
                       proxy_recursive=self.proxy_recursive)
        if self.ranges:
            geo.default = self.default or ""
            for high in sorted(self.low or ()):
                base = high << 16
                geo.spans.extend((base + s, base + t, v) for s, t, v in self.low[high])
            return geo
        trees = self.trees or (_Radix(32), _Radix(128))
        for tree in trees:
            tree.insert(0, 0, "")           # nginx's empty default, unless one was given
        geo.networks4, geo.networks6 = trees[0].tables(), trees[1].tables()
        return geo


def _slices(start: int, end: int):
    """(high 16 bits, low start, low end) for each /16 that [start, end] touches."""
    n = start
    while n <= end:
        high = n >> 16
        low_start = n & 0xFFFF if n == start else 0
        low_end = end & 0xFFFF if n | 0xFFFF > end else 0xFFFF
        yield high, low_start, low_end
        n = (n + 0x10000) & 0xFFFF0000
        if high == 0xFFFF:
            break


def geo_block(d: Directive, warnings: list[str], known) -> GeoBlock:
    """Read one ``geo [$address] $variable { ... }`` block; ``known(name)`` says whether a
    variable exists, for the address one."""
    variable = variable_name(d)
    source = d.args[0][1:] if len(d.args) == 2 else None
    reader = _Reader(warnings)
    for e in d.block:
        reader.entry(e)
    if source is not None and not known(source):
        # nginx finds this out when all variables are known, and names no place.
        raise ConfigError(f'unknown "{source}" variable', d.file, d.line)
    return reader.block(source, variable)
