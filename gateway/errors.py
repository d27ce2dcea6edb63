"""Every exception the gateway raises on purpose.

Stdlib-only so that the Cython modules in ``_fastpath`` can import it too.
OS errors are wrapped at the boundary with ``raise ... from exc``.
"""


class GatewayError(Exception):
    """Base of every error the gateway raises deliberately."""


# Configuration ------------------------------------------------------------

class ConfigError(GatewayError):
    """A bad configuration; rendered in nginx's wording plus ``file:line``."""

    def __init__(self, message, file=None, line=None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self):
        if self.file is None:
            return self.message
        if self.line is None:
            return f"{self.message} in {self.file}"
        return f"{self.message} in {self.file}:{self.line}"


# HTTP from the client -----------------------------------------------------

class HttpError(GatewayError):
    """A request the gateway answers with an error status."""

    status = 500
    reason = "Internal Server Error"

    def __init__(self, detail=None):
        super().__init__(detail or self.reason)
        self.detail = detail or self.reason


class BadRequest(HttpError):
    status, reason = 400, "Bad Request"


class NotFound(HttpError):
    status, reason = 404, "Not Found"


class RequestTimeout(HttpError):
    status, reason = 408, "Request Time-out"


class LengthRequired(HttpError):
    status, reason = 411, "Length Required"


class PayloadTooLarge(HttpError):
    status, reason = 413, "Request Entity Too Large"


class UriTooLong(HttpError):
    status, reason = 414, "Request-URI Too Large"


class HeadersTooLarge(HttpError):
    # RFC 6585 section 5; nginx answers 400 "Request Header Or Cookie Too Large".
    status, reason = 431, "Request Header Fields Too Large"


class SslCertificateError(HttpError):
    # nginx's own code 495 (NGX_HTTPS_CERT_ERROR): answered as 400 with its text.
    status, reason = 495, "The SSL certificate error"


class SslCertificateMissing(HttpError):
    # nginx's own code 496 (NGX_HTTPS_NO_CERT): answered as 400 with its text.
    status, reason = 496, "No required SSL certificate was sent"


class NotImplementedMethod(HttpError):
    status, reason = 501, "Not Implemented"


class VersionNotSupported(HttpError):
    status, reason = 505, "HTTP Version Not Supported"


class BrokenProxyHeader(GatewayError):
    """A connection on a ``listen ... proxy_protocol`` socket that does not open with a valid
    PROXY header; the message is nginx's log text ("" where nginx logs nothing)."""


# Upstreams ----------------------------------------------------------------

class UpstreamError(GatewayError):
    """An upstream failed; ``kind`` names the proxy_next_upstream condition."""

    status = 502
    kind = "error"

    def __init__(self, detail, retryable=True):
        super().__init__(detail)
        self.retryable = retryable


class UpstreamConnectError(UpstreamError):
    kind = "error"


class UpstreamResetError(UpstreamError):
    kind = "error"


class UpstreamTimeout(UpstreamError):
    status = 504
    kind = "timeout"


class InvalidUpstreamResponse(UpstreamError):
    kind = "invalid_header"


# Unikernel workers --------------------------------------------------------

class UnikernelError(GatewayError):
    """A unikernel worker could not be started or stopped serving."""


class QemuNotFound(UnikernelError):
    pass


class ImageNotFound(UnikernelError):
    pass


class LaunchFailed(UnikernelError):
    pass


class WorkerExited(UnikernelError):
    pass


class MalformedFrame(UnikernelError):
    """A frame from a unikernel link that breaks the wire protocol (unikernels/PROTOCOL.md)."""


class ServiceRefused(GatewayError):
    """A request a unikernel service cannot take (gateway/unikernel/dispatch.py): answered with `status`,
    plus `extra` header lines (e.g. Allow) when there are some."""

    def __init__(self, status, extra=b""):
        super().__init__(status)
        self.status = status
        self.extra = extra
