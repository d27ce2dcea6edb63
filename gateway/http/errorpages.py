"""error_page and internal locations: per-request state and the plan for internal locations.

The state lives in the request's ``vars`` under names no variable can have (they start with
a space), so that requests that never meet an error page carry nothing extra.
"""

from __future__ import annotations

from gateway.http.plan import WrappingPlan
from gateway.http.variables import compile_template

_INTERNAL = " internal"          # reached by an internal redirect, rewrite or error page
_IN_ERROR_PAGE = " error_page"   # an error page is being answered (recursive_error_pages off)
_STATUS = " err_status"          # the status the error page's answer is sent with
_REDIRECTS = " error_redirects"
_KEPT = " error_headers"         # header fields the error page's answer carries (a challenge)

# nginx gives up error pages once a request used its 10 URI changes.
MAX_ERROR_REDIRECTS = 10

_templates: dict = {}


class InternalPlan(WrappingPlan):
    """A location marked ``internal``: a request that arrives from outside gets 404."""

    __slots__ = ()

    def __init__(self, content):
        super().__init__("internal", content, content.settings)


def _values(request) -> dict:
    values = getattr(request, "vars", None)
    if values is None:
        values = request.vars = {}
    return values


def mark_internal(request) -> None:
    """The request's URI was changed inside the gateway (nginx's r->internal)."""
    _values(request)[_INTERNAL] = True


def is_internal(request) -> bool:
    """Whether the request reached its location from inside the gateway."""
    values = getattr(request, "vars", None)
    if values and values.get(_INTERNAL):
        return True
    return getattr(request, "rewritten", None) in ("last", "break")


def status_override(request):
    """The status an error page's answer must carry (None: its own)."""
    values = getattr(request, "vars", None)
    return values.get(_STATUS) if values else None


def choose(request, settings, status: int):
    """The error_page for ``status`` at this level, or None (none, or recursion refused)."""
    pages = settings.error_pages
    if not pages:
        return None
    values = _values(request)
    if values.get(_IN_ERROR_PAGE) or values.get(_REDIRECTS, 0) >= MAX_ERROR_REDIRECTS:
        return None
    for page in pages:
        if status in page.codes:
            if not settings.recursive_error_pages:
                values[_IN_ERROR_PAGE] = True
            values[_REDIRECTS] = values.get(_REDIRECTS, 0) + 1
            # -1 keeps the error's status, 0 ("=") lets the new answer choose its own.
            values[_STATUS] = status if page.overwrite < 0 else (page.overwrite or None)
            values[_INTERNAL] = True
            return page
    return None


def target(page, request) -> str:
    """The page's URI for this request (it may hold variables)."""
    template = _templates.get(page.uri)
    if template is None:
        template = _templates[page.uri] = compile_template(page.uri)
    return template.render(request)


def clear_status(request) -> None:
    """An error page's redirect answers with its own status."""
    values = getattr(request, "vars", None)
    if values:
        values.pop(_STATUS, None)


def keep_header(request, name: str, value: str) -> None:
    """A header the answer to this error carries, even from an error page (WWW-Authenticate)."""
    _values(request).setdefault(_KEPT, []).append((name, value))


def kept_headers(request) -> list:
    values = getattr(request, "vars", None)
    return values.get(_KEPT, []) if values else []
