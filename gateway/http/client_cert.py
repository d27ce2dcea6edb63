"""Client certificates (ssl_verify_client): the verification nginx does, and $ssl_client_*.

nginx asks for a certificate with SSL_VERIFY_PEER and a verify callback that accepts every
chain, so the handshake always completes and HTTP answers a missing or unverifiable
certificate (400 pages for its codes 495 and 496).  Python's ssl offers no verify callback:
CERT_OPTIONAL or CERT_REQUIRED abort the handshake on a chain that does not verify.  So the
callback is set here on the SSL_CTX itself, through ctypes, with the OpenSSL that ``_ssl``
is linked to; the verify result and the certificate's fields are read with the same
functions nginx calls, so the values have nginx's formats exactly.
"""

from __future__ import annotations

import _ssl
import ctypes
import hashlib
import ssl
import time
from email.utils import parsedate_to_datetime

from gateway.errors import ConfigError

_lib = ctypes.CDLL(_ssl.__file__)     # dlsym also finds libssl's and libcrypto's symbols
_P = ctypes.c_void_p
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, _P)


def _bind(name, restype, *argtypes):
    function = getattr(_lib, name)
    function.restype, function.argtypes = restype, list(argtypes)
    return function


_SSL_CTX_set_verify = _bind("SSL_CTX_set_verify", None, _P, ctypes.c_int, _VERIFY_CALLBACK)
_SSL_CTX_get_verify_mode = _bind("SSL_CTX_get_verify_mode", ctypes.c_int, _P)
_SSL_CTX_get_verify_callback = _bind("SSL_CTX_get_verify_callback", _P, _P)
_SSL_CTX_set_verify_depth = _bind("SSL_CTX_set_verify_depth", None, _P, ctypes.c_int)
_SSL_CTX_get_verify_depth = _bind("SSL_CTX_get_verify_depth", ctypes.c_int, _P)
_SSL_CTX_set_client_CA_list = _bind("SSL_CTX_set_client_CA_list", None, _P, _P)
_SSL_load_client_CA_file = _bind("SSL_load_client_CA_file", _P, ctypes.c_char_p)
_SSL_set_verify = _bind("SSL_set_verify", None, _P, ctypes.c_int, _P)
_SSL_set_verify_depth = _bind("SSL_set_verify_depth", None, _P, ctypes.c_int)
_SSL_get_SSL_CTX = _bind("SSL_get_SSL_CTX", _P, _P)
_SSL_get_verify_result = _bind("SSL_get_verify_result", ctypes.c_long, _P)
_X509_verify_cert_error_string = _bind("X509_verify_cert_error_string", ctypes.c_char_p,
                                       ctypes.c_long)
_d2i_X509 = _bind("d2i_X509", _P, _P, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long)
_X509_free = _bind("X509_free", None, _P)
_X509_get_subject_name = _bind("X509_get_subject_name", _P, _P)
_X509_get_issuer_name = _bind("X509_get_issuer_name", _P, _P)
_X509_get_serialNumber = _bind("X509_get_serialNumber", _P, _P)
_X509_get0_notBefore = _bind("X509_get0_notBefore", _P, _P)
_X509_get0_notAfter = _bind("X509_get0_notAfter", _P, _P)
_X509_NAME_print_ex = _bind("X509_NAME_print_ex", ctypes.c_int, _P, _P, ctypes.c_int,
                            ctypes.c_ulong)
_i2a_ASN1_INTEGER = _bind("i2a_ASN1_INTEGER", ctypes.c_int, _P, _P)
_ASN1_TIME_print = _bind("ASN1_TIME_print", ctypes.c_int, _P, _P)
_BIO_s_mem = _bind("BIO_s_mem", _P)
_BIO_new = _bind("BIO_new", _P, _P)
_BIO_read = _bind("BIO_read", ctypes.c_int, _P, ctypes.c_char_p, ctypes.c_int)
_BIO_free = _bind("BIO_free", ctypes.c_int, _P)
_ERR_clear_error = _bind("ERR_clear_error", None)

_SSL_VERIFY_PEER = 1
# XN_FLAG_RFC2253: ASN1_STRFLGS_RFC2253 | SEP_COMMA_PLUS | DN_REV | DUMP_UNKNOWN_FIELDS.
_XN_FLAG_RFC2253 = 0x317 | 1 << 16 | 1 << 20 | 1 << 24
# ngx_ssl_verify_error_optional: what "optional_no_ca" lets through (an unknown issuer).
_OPTIONAL_NO_CA = frozenset({18, 19, 20, 21, 27})

# nginx's ngx_ssl_verify_callback: log nothing, accept everything; HTTP decides.
_accept_chain = _VERIFY_CALLBACK(lambda ok, store: 1)
_HEAD = object.__basicsize__       # PyObject_HEAD, before _ssl's own fields
_layout_checked = False


def _ctx_pointer(ctx: ssl.SSLContext) -> int:
    # PySSLContext: PyObject_HEAD, then SSL_CTX *ctx.
    return ctypes.c_void_p.from_address(id(ctx) + _HEAD).value


def _ssl_pointer(ssl_object) -> int:
    # PySSLSocket (SSLObject._sslobj): PyObject_HEAD, PyObject *Socket, then SSL *ssl.
    inner = getattr(ssl_object, "_sslobj", ssl_object)
    return ctypes.c_void_p.from_address(id(inner) + _HEAD + ctypes.sizeof(_P)).value


def _check_layout() -> None:
    """Refuse to poke at _ssl's objects unless their layout is the one assumed above."""
    global _layout_checked
    if _layout_checked:
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    modes = []
    for mode in (ssl.CERT_NONE, ssl.CERT_OPTIONAL):
        ctx.verify_mode = mode
        modes.append(_SSL_CTX_get_verify_mode(_ctx_pointer(ctx)))
    probe = ctx.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    if modes != [0, 1] or _SSL_get_SSL_CTX(_ssl_pointer(probe)) != _ctx_pointer(ctx):
        raise ConfigError("client certificates are not supported with this Python's ssl module")
    _layout_checked = True


def configure(ctx: ssl.SSLContext, tls) -> None:
    """nginx's ngx_ssl_client_certificate, ngx_ssl_trusted_certificate and ngx_ssl_crl."""
    from gateway.http.tls import _reason, _where
    _check_layout()
    pointer = _ctx_pointer(ctx)
    if tls.verify:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        _SSL_CTX_set_verify(pointer, _SSL_VERIFY_PEER, _accept_chain)
    for name, path in (("ssl_client_certificate", tls.client_certificate if tls.verify else None),
                       ("ssl_trusted_certificate", tls.trusted_certificate)):
        if path is None:
            continue
        try:
            ctx.load_verify_locations(cafile=path)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f'SSL_CTX_load_verify_locations("{path}") failed '
                              f"({_reason(exc)})", *_where(tls, name)) from None
        if name == "ssl_client_certificate":
            names = _SSL_load_client_CA_file(path.encode())
            if not names:
                _ERR_clear_error()
                raise ConfigError(f'SSL_load_client_CA_file("{path}") failed')
            _SSL_CTX_set_client_CA_list(pointer, names)
    _SSL_CTX_set_verify_depth(pointer, tls.verify_depth)
    if tls.crl is not None:
        try:
            ctx.load_verify_locations(cafile=tls.crl)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f'X509_LOOKUP_load_file("{tls.crl}") failed '
                              f"({_reason(exc)})", *_where(tls, "ssl_crl")) from None
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN
    _ERR_clear_error()


def follow(ssl_object, ctx: ssl.SSLContext) -> None:
    """After SNI switched the context: its verify mode and depth, as ngx_http_ssl_servername."""
    pointer, connection = _ctx_pointer(ctx), _ssl_pointer(ssl_object)
    _SSL_set_verify(connection, _SSL_CTX_get_verify_mode(pointer),
                    _SSL_CTX_get_verify_callback(pointer))
    _SSL_set_verify_depth(connection, _SSL_CTX_get_verify_depth(pointer))


def refusal(ssl_object, verify: int) -> tuple | None:
    """(nginx's status, log text) when a request must be refused, as ngx_http_process_request."""
    result = _SSL_get_verify_result(_ssl_pointer(ssl_object))
    if result and (verify != 3 or result not in _OPTIONAL_NO_CA):
        return 495, (f"client SSL certificate verify error: ({result}:"
                     f"{_X509_verify_cert_error_string(result).decode()})")
    if verify == 1 and ssl_object.getpeercert(binary_form=True) is None:
        return 496, "client sent no required SSL certificate"
    return None


# $ssl_client_* -------------------------------------------------------------------------

def _der(r) -> bytes | None:
    return r.ssl_object.getpeercert(binary_form=True) if r.ssl_object is not None else None


def _printed(der: bytes, field, printer, *extra) -> str:
    """What an OpenSSL printer writes for one field of the certificate, through a memory BIO."""
    data = ctypes.c_char_p(der)
    cert = _d2i_X509(None, ctypes.byref(data), len(der))
    if not cert:
        _ERR_clear_error()
        return ""
    bio = _BIO_new(_BIO_s_mem())
    try:
        printer(bio, field(cert), *extra)
        out, buffer = [], ctypes.create_string_buffer(4096)
        while (n := _BIO_read(bio, buffer, len(buffer))) > 0:
            out.append(buffer.raw[:n])
        return b"".join(out).decode("utf-8", "replace")
    finally:
        _BIO_free(bio)
        _X509_free(cert)


def ssl_client_verify(r) -> str:
    if r.ssl_object is None:
        return ""
    if _der(r) is None:
        return "NONE"
    result = _SSL_get_verify_result(_ssl_pointer(r.ssl_object))
    if result == 0:
        return "SUCCESS"
    return "FAILED:" + _X509_verify_cert_error_string(result).decode()


def ssl_client_s_dn(r) -> str:
    der = _der(r)
    return _printed(der, _X509_get_subject_name, _X509_NAME_print_ex, 0, _XN_FLAG_RFC2253) \
        if der else ""


def ssl_client_i_dn(r) -> str:
    der = _der(r)
    return _printed(der, _X509_get_issuer_name, _X509_NAME_print_ex, 0, _XN_FLAG_RFC2253) \
        if der else ""


def ssl_client_serial(r) -> str:
    der = _der(r)
    return _printed(der, _X509_get_serialNumber, _i2a_ASN1_INTEGER) if der else ""


def ssl_client_fingerprint(r) -> str:
    der = _der(r)
    return hashlib.sha1(der).hexdigest() if der else ""


def ssl_client_raw_cert(r) -> str:
    der = _der(r)
    return ssl.DER_cert_to_PEM_cert(der) if der else ""


def ssl_client_cert(r) -> str:
    """The PEM with a tab after every line break but the last (a header continuation)."""
    pem = ssl_client_raw_cert(r)
    return pem[:-1].replace("\n", "\n\t") if pem else ""


def ssl_client_v_start(r) -> str:
    der = _der(r)
    return _printed(der, _X509_get0_notBefore, _ASN1_TIME_print) if der else ""


def ssl_client_v_end(r) -> str:
    der = _der(r)
    return _printed(der, _X509_get0_notAfter, _ASN1_TIME_print) if der else ""


def ssl_client_v_remain(r) -> str:
    end = ssl_client_v_end(r)
    if not end:
        return ""
    try:
        # ngx_ssl_parse_time: "MMM DD HH:MM:SS YYYY GMT" read as an HTTP date.
        month, day, clock, year = end.split()[:4]
        expires = parsedate_to_datetime(f"Tue, {day} {month} {year} {clock} GMT").timestamp()
    except (ValueError, TypeError):
        return ""
    now = time.time()
    return "0" if expires < now + 86400 else str(int((expires - now) // 86400))
