"""nginx's auth_basic at request time: the Authorization header checked against an htpasswd file.

The file is read for every request, as nginx reads it (a change needs no reload). A line is
"user:password[:comment]"; lines starting with "#" are skipped. Passwords in the forms nginx's
ngx_crypt knows: "$apr1$" (Apache's MD5), "{PLAIN}", "{SHA}", "{SSHA}", and what the system's
crypt(3) takes ("$1$", "$5$", "$6$", DES), here through passlib's implementations.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import warnings

from gateway.observe.errorlog import log

_CREDENTIALS = " auth_basic"      # in request.vars: the (user, password) parsed once
_NONE = ("", None)


def _passlib():
    """passlib's hashes, imported when a password needs them (not by every worker at start)."""
    with warnings.catch_warnings():
        # passlib imports the stdlib's deprecated crypt module when it is there; it works without.
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib import hash as schemes
    return schemes


def credentials(request) -> tuple[str, str | None]:
    """(user, password) of "Authorization: Basic ..." as ngx_http_auth_basic_user reads it;
    ("", None) when there are none. The user is also $remote_user."""
    header = request.header("authorization")
    if header is None:
        return _NONE
    values = getattr(request, "vars", None)
    if values is not None and _CREDENTIALS in values:
        return values[_CREDENTIALS]
    found = _parse(header)
    if values is None:
        values = request.vars = {}
    values[_CREDENTIALS] = found
    return found


def _parse(header):
    if header is None or len(header) < 6 or header[:6].lower() != "basic ":
        return _NONE
    encoded = header[6:].lstrip(" ")
    if not encoded:
        return _NONE
    try:
        decoded = base64.b64decode(encoded.encode("latin-1"), validate=True)
    except (binascii.Error, ValueError):
        try:    # nginx's decoder takes unpadded input too
            decoded = base64.b64decode(encoded.encode("latin-1") + b"=" * (-len(encoded) % 4),
                                       validate=True)
        except (binascii.Error, ValueError):
            return _NONE
    user, colon, password = decoded.partition(b":")
    if not user or not colon:
        return _NONE
    return user.decode("latin-1"), password.decode("latin-1")


def password_matches(password: str, stored: str) -> bool:
    """Whether ``password`` gives ``stored`` (a form nginx does not know never does)."""
    given = password.encode("latin-1")
    if stored.startswith("{PLAIN}"):
        return hmac.compare_digest(given, stored[7:].encode("latin-1"))
    if stored.startswith("{SHA}"):
        digest = base64.b64encode(hashlib.sha1(given).digest()).decode()
        return hmac.compare_digest(digest, stored[5:])
    if stored.startswith("{SSHA}"):
        try:
            raw = base64.b64decode(stored[6:])
        except (binascii.Error, ValueError):
            return False        # nginx hashes with what it could decode: never equal
        if len(raw) < 20:
            return False
        return hmac.compare_digest(hashlib.sha1(given + raw[20:]).digest(), raw[:20])
    schemes = _passlib()
    if stored.startswith("$apr1$"):
        return schemes.apr_md5_crypt.identify(stored) and schemes.apr_md5_crypt.verify(given, stored)
    for scheme in (schemes.md5_crypt, schemes.sha256_crypt, schemes.sha512_crypt, schemes.des_crypt):
        if scheme.identify(stored):
            try:
                return scheme.verify(given, stored)
            except ValueError:
                return False
    return False        # what crypt(3) gives for such a "salt" never equals it (nginx: 401)


def find_password(path: str, user: str):
    """The stored password of ``user`` in an htpasswd file (nginx's reading of it), or None."""
    with open(path, "rb") as handle:
        data = handle.read()
    prefix = user.encode("latin-1") + b":"
    for line in data.split(b"\n"):
        if line.startswith(prefix):
            rest = line[len(prefix):]
            for stop in (b"\r", b":"):
                rest = rest.partition(stop)[0]
            return rest.decode("latin-1")
    return None


class AuthBasic:
    """One level's auth_basic realm and auth_basic_user_file (both may hold variables)."""

    __slots__ = ("realm", "user_file")

    def __init__(self, settings):
        from gateway.http.variables import compile_template
        self.realm = compile_template(settings.auth_basic)
        self.user_file = compile_template(settings.auth_basic_user_file)

    def check(self, request, context):
        """None: not for this request; 0: the user is known; else (status, WWW-Authenticate
        value or None)."""
        realm = self.realm.render(request)
        if realm == "off":
            return None
        user, password = credentials(request)
        if password is None:
            log.info(f"*{request.connection_id} "
                     f"no user/password was provided for basic authentication{context(request)}")
            return self._challenge(realm)
        path = self.user_file.render(request)
        try:
            stored = find_password(path, user)
        except FileNotFoundError as exc:
            log.error(f'*{request.connection_id} '
                      f'open() "{path}" failed (2: {exc.strerror}){context(request)}')
            return 403, None
        except OSError as exc:
            log.crit(f'*{request.connection_id} '
                     f'open() "{path}" failed ({exc.errno}: {exc.strerror}){context(request)}')
            return 500, None
        if stored is None:
            log.error(f'*{request.connection_id} '
                      f'user "{user}" was not found in "{path}"{context(request)}')
            return self._challenge(realm)
        if password_matches(password, stored):
            return 0
        log.error(f'*{request.connection_id} user "{user}": password mismatch{context(request)}')
        return self._challenge(realm)

    @staticmethod
    def _challenge(realm):
        return 401, f'Basic realm="{realm}"'
