"""Content-Type of a URI from its extension, as nginx's ``types``/``default_type``."""

from __future__ import annotations

# id(types dict) -> (the dict, its lowercased copy).  The dicts are built once
# at config load, so this holds one entry per distinct ``types`` block.
_lowered: dict[int, tuple[dict, dict]] = {}


def extension(uri: str) -> str:
    """The extension nginx takes from a URI (``ngx_http_set_exten``).

    Only a dot after the last slash counts, and not one that starts the last
    segment: "/.profile" and "/dir.d/file" have none.
    """
    dot = uri.rfind(".")
    if dot > 1 and dot > uri.rfind("/") + 1:
        return uri[dot + 1:]
    return ""


def content_type(uri: str, types: dict[str, str], default_type: str) -> str:
    """The MIME type for ``uri``: extension lookup ignoring case, else ``default_type``."""
    ext = extension(uri)
    if not ext:
        return default_type
    entry = _lowered.get(id(types))
    if entry is None or entry[0] is not types:
        # nginx lowercases both the configured extensions and the request's.
        if len(_lowered) > 64:
            _lowered.clear()   # old configs after reloads
        entry = (types, {key.lower(): value for key, value in types.items()})
        _lowered[id(types)] = entry
    found = entry[1].get(ext.lower())
    return found if found is not None else default_type
