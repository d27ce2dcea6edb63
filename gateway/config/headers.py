"""The expires directive (ngx_http_headers_module), read in nginx's wording."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

# nginx's NGX_HTTP_EXPIRES_* modes.
ACCESS, MODIFIED, EPOCH, MAX, DAILY = "access", "modified", "epoch", "max", "daily"


@dataclass(frozen=True)
class Expires:
    """One ``expires`` setting; ``template`` is its text when it holds variables."""

    mode: str                  # ACCESS, MODIFIED, EPOCH, MAX or DAILY
    seconds: int = 0           # negative: in the past; DAILY: seconds after local midnight
    template: str | None = None


def parse_value(text: str, modified: bool) -> tuple[Expires | None, str | None]:
    """nginx's ngx_http_parse_expires: (the setting, None for "off"; error text or None)."""
    if not modified:
        if text == "epoch":
            return Expires(EPOCH), None
        if text == "max":
            return Expires(MAX), None
        if text == "off":
            return None, None
    mode, minus = (MODIFIED if modified else ACCESS), False
    if text.startswith("@"):
        if modified:
            return None, 'daily time cannot be used with "modified" parameter'
        mode, text = DAILY, text[1:]
    elif text.startswith(("+", "-")):
        minus, text = text[0] == "-", text[1:]
    seconds = values.parse_time(text) if text and "ms" not in text else None
    if seconds is None or seconds != int(seconds):
        return None, "invalid value"
    seconds = int(seconds)
    if mode == DAILY and seconds > 24 * 60 * 60:
        return None, "daily time value must be less than 24 hours"
    return Expires(mode, -seconds if minus else seconds), None


def read(d: Directive, own: dict, compile_template) -> None:
    """``expires [modified] TIME|epoch|max|off|@TIME``: own["expires"] (None for off)."""
    a, f, ln = d.args, d.file, d.line
    if "expires" in own:
        raise ConfigError('"expires" directive is duplicate', f, ln)
    if len(a) == 2 and a[0] != "modified":
        raise ConfigError('"expires" directive invalid value', f, ln)
    modified, text = len(a) == 2, a[-1]
    compile_template(text, f, ln)
    if "$" in text:
        own["expires"] = Expires(MODIFIED if modified else ACCESS, 0, text)
        return
    setting, error = parse_value(text, modified)
    if error is not None:
        raise ConfigError(f'"expires" directive {error}', f, ln)
    own["expires"] = setting
