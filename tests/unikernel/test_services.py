"""Each service booted for real under QEMU microvm + TCG over a socketpair and driven with wire.py."""

import base64
import hashlib
import hmac
import json
import random
import struct

import pytest

from gateway.unikernel import wire
from gateway.unikernel.wire import FRAG_MAX, MAX_PAYLOAD, Op, Status

pytestmark = pytest.mark.qemu


def test_ping_is_answered_by_the_kernel(boot):
    worker = boot("echo", instance_id=3)
    msg = worker.request(Op.PING)
    assert (msg.status, msg.payload) == (Status.OK, b"echo 3")
    assert "uk: echo id=3 mac=52:54:00:00:00:07" in worker.console()


@pytest.mark.parametrize("size", [0, 1, FRAG_MAX, FRAG_MAX + 1, 65_536, MAX_PAYLOAD])
def test_echo_across_fragments(boot, size):
    worker = boot("echo")
    payload = random.Random(size).randbytes(size)
    msg = worker.request(Op.ECHO, payload)
    assert msg.status == Status.OK and msg.payload == payload


def test_echo_unknown_op(boot):
    assert boot("echo").request(Op.KV_GET, b"k").status == Status.UNKNOWN_OP


def test_echo_many_in_flight(boot):
    worker = boot("echo")
    payloads = {worker.ids.next(): random.Random(i).randbytes(i * 397) for i in range(32)}
    worker.send_frames(f for rid, p in payloads.items()
                       for f in wire.encode(worker.guest_mac, worker.link.mac, rid, Op.ECHO, p))
    for rid, p in payloads.items():
        assert worker.reply(rid).payload == p


def _put(ttl, key, value):
    return struct.pack("<IH", ttl, len(key)) + key + value


def test_kv_get_put_delete(boot):
    kv = boot("kv")
    assert kv.request(Op.KV_GET, b"missing").status == Status.NOT_FOUND
    assert kv.request(Op.KV_PUT, _put(0, b"k1", b"v1")).status == Status.OK
    assert kv.request(Op.KV_GET, b"k1").payload == b"v1"
    assert kv.request(Op.KV_PUT, _put(0, b"k1", b"v2")).status == Status.OK
    assert kv.request(Op.KV_GET, b"k1").payload == b"v2"
    big = random.Random(5).randbytes(300_000)
    assert kv.request(Op.KV_PUT, _put(0, b"big", big)).status == Status.OK
    assert kv.request(Op.KV_GET, b"big").payload == big
    largest = random.Random(6).randbytes(MAX_PAYLOAD - 6 - 4)
    assert kv.request(Op.KV_PUT, _put(0, b"huge", largest)).status == Status.OK
    assert kv.request(Op.KV_GET, b"huge").payload == largest
    assert kv.request(Op.KV_DELETE, b"k1").status == Status.OK
    assert kv.request(Op.KV_DELETE, b"k1").status == Status.NOT_FOUND
    assert kv.request(Op.KV_GET, b"k1").status == Status.NOT_FOUND
    assert kv.request(Op.KV_PUT, b"\x00").status == Status.BAD_REQUEST
    assert kv.request(Op.KV_PUT, struct.pack("<IH", 0, 50) + b"short").status == Status.BAD_REQUEST
    assert kv.request(Op.KV_GET, b"").status == Status.BAD_REQUEST


def test_kv_ttl_uses_the_request_clock(boot):
    kv = boot("kv")
    assert kv.request(Op.KV_PUT, _put(10, b"t", b"x"), now=1000).status == Status.OK
    assert kv.request(Op.KV_GET, b"t", now=1009).payload == b"x"
    assert kv.request(Op.KV_GET, b"t", now=1010).status == Status.NOT_FOUND
    assert kv.stats()["svc3"] == 1      # expirations


def test_kv_memory_cap_evicts_least_recently_used(boot):
    kv = boot("kv", append="cap=65536")
    value = bytes(12000)                # each entry takes a 16 KiB block: four fit under the cap
    for i in range(4):
        assert kv.request(Op.KV_PUT, _put(0, b"k%d" % i, value)).status == Status.OK
    assert kv.request(Op.KV_GET, b"k0").status == Status.OK      # k0 is now the most recent
    assert kv.request(Op.KV_PUT, _put(0, b"k4", value)).status == Status.OK
    assert kv.request(Op.KV_GET, b"k1").status == Status.NOT_FOUND
    for key in (b"k0", b"k2", b"k3", b"k4"):
        assert kv.request(Op.KV_GET, key).status == Status.OK
    stats = kv.stats()
    assert stats["svc0"] == 4 and stats["svc1"] <= 65536 and stats["svc2"] == 1
    assert kv.request(Op.KV_PUT, _put(0, b"huge", bytes(70_000))).status == Status.TOO_LARGE


SITE = __import__("pathlib").Path(__file__).resolve().parents[2] / "unikernels/services/static/site"


def _static_reply(payload):
    tlen = payload[0]
    ctype = payload[1:1 + tlen].decode()
    elen = payload[1 + tlen]
    etag = payload[2 + tlen:2 + tlen + elen].decode()
    return ctype, etag, payload[2 + tlen + elen:]


def test_static_files_types_and_etags(boot):
    site = boot("static")
    msg = site.request(Op.STATIC_GET, b"/index.html")
    ctype, etag, body = _static_reply(msg.payload)
    assert msg.status == Status.OK and ctype == "text/html; charset=utf-8"
    assert body == (SITE / "index.html").read_bytes()
    assert etag == '"%s"' % hashlib.sha256(body).hexdigest()[:16]
    assert _static_reply(site.request(Op.STATIC_GET, b"/").payload)[2] == body
    ctype, _, css = _static_reply(site.request(Op.STATIC_GET, b"/style.css").payload)
    assert ctype == "text/css" and css == (SITE / "style.css").read_bytes()
    not_modified = site.request(Op.STATIC_GET, b"/index.html\0" + etag.encode())
    assert not_modified.status == Status.NOT_MODIFIED and _static_reply(not_modified.payload)[2] == b""
    stale = site.request(Op.STATIC_GET, b"/index.html\0\"0000\"")
    assert stale.status == Status.OK and _static_reply(stale.payload)[2] == body
    assert site.request(Op.STATIC_GET, b"/nope.html").status == Status.NOT_FOUND
    assert site.request(Op.STATIC_GET, b"/../etc/passwd").status == Status.NOT_FOUND
    assert site.request(Op.STATIC_GET, b"relative").status == Status.BAD_REQUEST


KEY = b"unikernel-test-secret"
JWT_IO_TOKEN = (b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0Ij"
                b"oxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def jwt(claims, key=KEY, header=None):
    """A JWT HS256 token made with Python's hmac/hashlib: the independent implementation."""
    head = _b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(claims if isinstance(claims, bytes) else json.dumps(claims).encode())
    sig = hmac.new(key, head + b"." + body, hashlib.sha256).digest()
    return head + b"." + body + b"." + _b64(sig)


def test_auth_vectors(boot):
    auth = boot("auth", append=f"key={KEY.hex()}")
    assert "auth key set" in auth.console() and KEY.hex() not in auth.console()
    now = 1_700_000_000
    claims = {"sub": "alice", "exp": now + 60, "nbf": now - 60}
    ok = auth.request(Op.AUTH_VERIFY, jwt(claims), now=now)
    assert ok.status == Status.OK and json.loads(ok.payload) == claims
    assert auth.request(Op.AUTH_VERIFY, jwt(claims), now=now + 60).status == Status.EXPIRED
    assert auth.request(Op.AUTH_VERIFY, jwt(claims), now=now - 61).status == Status.NOT_YET_VALID
    assert auth.request(Op.AUTH_VERIFY, jwt({"sub": "x"}), now=now).status == Status.OK
    assert auth.request(Op.AUTH_VERIFY, jwt(claims, key=b"wrong"), now=now).status == Status.UNAUTHORIZED
    tampered = jwt(claims).split(b".")
    tampered[1] = _b64(json.dumps({"sub": "mallory", "exp": now + 60}).encode())
    assert auth.request(Op.AUTH_VERIFY, b".".join(tampered), now=now).status == Status.UNAUTHORIZED
    none_alg = jwt(claims, header={"alg": "none"})
    assert auth.request(Op.AUTH_VERIFY, none_alg, now=now).status == Status.UNAUTHORIZED
    for garbage in (b"", b"abc", b"a.b", b"a.b.c.d", b"..", b"\xff.\xfe.\xfd", jwt(claims)[:-3]):
        assert auth.request(Op.AUTH_VERIFY, garbage, now=now).status == Status.UNAUTHORIZED, garbage
    # Claims written by hand: exponent notation is refused, odd spacing and nesting are fine.
    assert auth.request(Op.AUTH_VERIFY, jwt(b'{"exp": 1.7e9}'), now=now).status == Status.UNAUTHORIZED
    assert auth.request(Op.AUTH_VERIFY, jwt(b'{"exp":"soon"}'), now=now).status == Status.UNAUTHORIZED
    odd = b' { "a" : [1, {"exp": 1}], "s": "\\"exp\\": 1", "exp" : %d } ' % (now + 1)
    assert auth.request(Op.AUTH_VERIFY, jwt(odd), now=now).status == Status.OK
    assert auth.request(Op.AUTH_VERIFY, jwt(odd), now=now + 1).status == Status.EXPIRED
    big_claims = {"sub": "bob", "pad": "x" * 4000, "exp": now + 5}
    assert auth.request(Op.AUTH_VERIFY, jwt(big_claims), now=now).status == Status.OK


def test_auth_key_by_control_message(boot):
    auth = boot("auth")
    assert auth.request(Op.AUTH_VERIFY, JWT_IO_TOKEN, now=1).status == Status.NO_KEY
    assert auth.request(Op.AUTH_SETKEY, b"your-256-bit-secret").status == Status.OK
    ok = auth.request(Op.AUTH_VERIFY, JWT_IO_TOKEN, now=1)
    assert ok.status == Status.OK and json.loads(ok.payload)["name"] == "John Doe"
    stats = auth.stats()
    assert stats["svc0"] == 1 and stats["svc1"] == 1


def test_five_services_side_by_side(boot):
    workers = [boot(name, instance_id=i)
               for i, name in enumerate(("echo", "kv", "static", "auth", "webhook"), start=10)]
    for i, worker in enumerate(workers, start=10):
        assert worker.request(Op.PING).payload == f"{worker.service} {i}".encode()
    assert workers[0].request(Op.ECHO, b"e").payload == b"e"
    assert workers[1].request(Op.KV_GET, b"e").status == Status.NOT_FOUND
    assert workers[2].request(Op.STATIC_GET, b"/hello.txt").status == Status.OK
    assert workers[3].request(Op.AUTH_VERIFY, JWT_IO_TOKEN).status == Status.NO_KEY
    assert workers[4].request(Op.WEBHOOK_VERIFY, b"\0\0").status == Status.NO_KEY
