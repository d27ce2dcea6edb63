"""`status_page [URI];`: a live HTML page polling the status_json document (README "Status page").

The page (status_page.html beside this module) is plain HTML with inline CSS and JS and no
external resources; the only thing it needs from the config is the status_json URI to poll,
written into a <meta> tag once per location when the worker builds its plans.
"""

from __future__ import annotations

import html
from pathlib import Path

CONTENT_TYPE = b"text/html; charset=utf-8"
PLACEHOLDER = b"{{STATUS_JSON_URI}}"
# Read on the first plan that needs it: configs without a status page never open the file.
_template: bytes | None = None


def page(status_json_uri: str) -> bytes:
    """The page's bytes, polling `status_json_uri`."""
    global _template
    if _template is None:
        _template = (Path(__file__).parent / "status_page.html").read_bytes()
    return _template.replace(PLACEHOLDER, html.escape(status_json_uri).encode())
