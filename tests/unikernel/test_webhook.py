"""The webhook service under real QEMU: the guest driven with wire.py, then through the gateway as a process."""

import hashlib
import hmac
import json
import random
import struct

import pytest

from gateway.unikernel.wire import FRAG_MAX, MAX_PAYLOAD, Op, Status
from tests.unikernel.test_gateway_services import (  # noqa: F401 (uk_gateway is a fixture)
    TRANSPORTS, qemu_pids, request, status, taps, uk_gateway)

pytestmark = pytest.mark.qemu

KEY = b"webhook-test-secret"
HEX = set(b"0123456789abcdefABCDEF")


def sign(body, key=KEY, prefix=b"sha256="):
    """GitHub's X-Hub-Signature-256 value for body, made with Python's hmac: the independent side."""
    return prefix + hmac.new(key, body, hashlib.sha256).hexdigest().encode()


def verify_payload(sig, body):
    """WEBHOOK_VERIFY's payload: u16 little-endian signature length, the signature, the body."""
    return struct.pack("<H", len(sig)) + sig + body


def reference(payload, key=KEY, limit=MAX_PAYLOAD):
    """The status the guest must give, judged in Python with hmac.compare_digest."""
    if len(payload) < 2:
        return Status.BAD_REQUEST
    (n,) = struct.unpack_from("<H", payload)
    if n > len(payload) - 2:
        return Status.BAD_REQUEST
    sig, body = payload[2:2 + n], payload[2 + n:]
    if sig.startswith(b"sha256=") and len(sig) == 71:
        sig = sig[7:]
    if len(sig) != 64 or not set(sig) <= HEX:
        return Status.BAD_REQUEST
    if len(body) > limit:
        return Status.TOO_LARGE
    good = hmac.compare_digest(bytes.fromhex(sig.decode()), hmac.new(key, body, hashlib.sha256).digest())
    return Status.OK if good else Status.UNAUTHORIZED


def check(worker, payload, expected, key=KEY, limit=MAX_PAYLOAD):
    """Ask the guest; its status must be both the stated one and the Python reference's."""
    msg = worker.request(Op.WEBHOOK_VERIFY, payload)
    assert reference(payload, key, limit) == expected, payload[:80]
    assert (msg.status, msg.payload) == (expected, b""), payload[:80]


def test_signatures_checked_against_python_hmac(boot):
    hook = boot("webhook", append=f"key={KEY.hex()}")
    console = hook.console()
    assert "webhook key set" in console and KEY.hex() not in console
    assert "max=1048576" in console
    body = json.dumps({"action": "opened", "number": 7}).encode()
    good = sign(body)
    check(hook, verify_payload(good, body), Status.OK)
    check(hook, verify_payload(good[7:], body), Status.OK)                         # hex alone
    check(hook, verify_payload(b"sha256=" + good[7:].upper(), body), Status.OK)     # upper-case hex
    check(hook, verify_payload(good[7:].upper(), body), Status.OK)
    mixed = bytes(c if i % 2 else c | 0x20 if c >= 0x41 else c for i, c in enumerate(good[7:].upper()))
    check(hook, verify_payload(mixed, body), Status.OK)
    # Wrong signatures: one digit off (first and last byte), another key, another body, all zeros.
    for pos in (7, 8, len(good) - 1):
        wrong = bytearray(good)
        wrong[pos] = ord("0") if wrong[pos] != ord("0") else ord("1")
        check(hook, verify_payload(bytes(wrong), body), Status.UNAUTHORIZED)
    check(hook, verify_payload(sign(body, key=b"another-secret"), body), Status.UNAUTHORIZED)
    check(hook, verify_payload(sign(body, key=KEY[:-1]), body), Status.UNAUTHORIZED)
    check(hook, verify_payload(good, body + b" "), Status.UNAUTHORIZED)
    check(hook, verify_payload(good, body[:-1]), Status.UNAUTHORIZED)
    check(hook, verify_payload(b"sha256=" + b"0" * 64, body), Status.UNAUTHORIZED)
    # The empty body has a signature too.
    check(hook, verify_payload(sign(b""), b""), Status.OK)
    check(hook, verify_payload(good, b""), Status.UNAUTHORIZED)
    # Bodies around SHA-256's 64-byte blocks and the 1476-byte fragments, random bytes.
    rng = random.Random(50)
    for size in (1, 55, 56, 63, 64, 65, 119, 120, 128, FRAG_MAX - 73, FRAG_MAX - 72, FRAG_MAX, 5000):
        data = rng.randbytes(size)
        check(hook, verify_payload(sign(data), data), Status.OK)
        check(hook, verify_payload(sign(data, key=b"x"), data), Status.UNAUTHORIZED)
    stats = hook.stats()
    assert (stats["svc0"], stats["svc1"]) == (19, 22)
    assert hook.request(Op.AUTH_VERIFY, verify_payload(good, body)).status == Status.UNKNOWN_OP


def test_malformed_payloads_and_signatures(boot):
    hook = boot("webhook", append=f"key={KEY.hex()}")
    body = b'{"zen": "Keep it logically awesome."}'
    digits = sign(body)[7:]
    for payload in (b"", b"\x40", struct.pack("<H", 1), struct.pack("<H", 72) + sign(body),
                    struct.pack("<H", 0xFFFF) + sign(body) + body):
        check(hook, payload, Status.BAD_REQUEST)
    for sig in (b"", digits[:-1], digits + b"0", b"sha256=" + digits[:-1], b"sha256=" + digits + b"0",
                b"sha256=", digits[:-1] + b"g", b"sha256=" + b"z" * 64, b"SHA256=" + digits,
                b"sha1=" + hashlib.sha1(body).hexdigest().encode(), b"sha512=" + digits, b"sha256:" + digits,
                b" sha256=" + digits, b"sha256=" + digits + b" ", b"sha256= " + digits[:-1], b"=" + digits,
                b"sha256=sha256=" + digits[:57], b"x" * 71, bytes(64)):
        check(hook, verify_payload(sig, body), Status.BAD_REQUEST)
    # The signature's length decides where the body starts: one byte more is a bad signature.
    check(hook, struct.pack("<H", 72) + sign(body) + body, Status.BAD_REQUEST)
    check(hook, struct.pack("<H", 70) + sign(body) + body, Status.BAD_REQUEST)
    # None of that disturbed the guest: it still tells a good signature from a wrong one.
    check(hook, verify_payload(b"sha256=" + digits, body), Status.OK)
    check(hook, verify_payload(b"sha256=" + digits[::-1], body), Status.UNAUTHORIZED)
    stats = hook.stats()
    assert (stats["svc0"], stats["svc1"]) == (1, 27)


def test_a_fragmented_body_and_the_max_parameter(boot):
    hook = boot("webhook", append=f"key={KEY.hex()}")
    big = random.Random(300).randbytes(300 * 1024)
    payload = verify_payload(sign(big), big)
    assert len(payload) > 200 * FRAG_MAX
    check(hook, payload, Status.OK)
    tampered = bytearray(big)
    tampered[150_000] ^= 1
    check(hook, verify_payload(sign(big), bytes(tampered)), Status.UNAUTHORIZED)
    largest = random.Random(1).randbytes(MAX_PAYLOAD - 2 - 71)
    check(hook, verify_payload(sign(largest), largest), Status.OK)
    capped = boot("webhook", append=f"key={KEY.hex()} max=1000", instance_id=2)
    assert "max=1000" in capped.console()
    for size, expected in ((0, Status.OK), (1000, Status.OK), (1001, Status.TOO_LARGE),
                           (300 * 1024, Status.TOO_LARGE)):
        data = big[:size]
        check(capped, verify_payload(sign(data), data), expected, limit=1000)
    check(capped, verify_payload(b"sha256=x", big[:2000]), Status.BAD_REQUEST, limit=1000)
    stats = capped.stats()
    assert (stats["svc0"], stats["svc1"]) == (2, 3)


def test_no_key_then_setkey(boot):
    hook = boot("webhook", append="max=99999999")
    console = hook.console()
    assert "webhook key not set" in console and "max=1048576" in console     # clamped to the protocol's limit
    body = b"payload"
    assert hook.request(Op.WEBHOOK_VERIFY, verify_payload(sign(body), body)).status == Status.NO_KEY
    assert hook.request(Op.WEBHOOK_SETKEY, b"").status == Status.BAD_REQUEST
    assert hook.request(Op.WEBHOOK_SETKEY, bytes(257)).status == Status.BAD_REQUEST
    assert hook.request(Op.WEBHOOK_VERIFY, verify_payload(sign(body), body)).status == Status.NO_KEY
    assert hook.request(Op.WEBHOOK_SETKEY, KEY).status == Status.OK
    check(hook, verify_payload(sign(body), body), Status.OK)
    check(hook, verify_payload(sign(body, key=b"other"), body), Status.UNAUTHORIZED)
    # Keys longer than SHA-256's block are hashed first (RFC 2104); 64 bytes exactly are not.
    rng = random.Random(9)
    for size in (1, 63, 64, 65, 200, 256):
        key = rng.randbytes(size)
        assert hook.request(Op.WEBHOOK_SETKEY, key).status == Status.OK
        check(hook, verify_payload(sign(body, key=key), body), Status.OK, key=key)
        check(hook, verify_payload(sign(body), body), Status.UNAUTHORIZED, key=key)
    stats = hook.stats()
    assert (stats["svc0"], stats["svc1"]) == (7, 9)


# Through the gateway ------------------------------------------------------------------------------

GW_KEY = b"gateway webhook key"
LIMIT = 65536


def webhook_config(port, transport):
    """A gateway with a keyed webhook pool capped at LIMIT body bytes and one without a key."""
    fast = "setting ping_interval 100ms; setting hang_timeout 1s; setting backoff_min 20ms;"
    return f"""
worker_processes 1;
error_log error.log info;
pid gateway.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    unikernel hooks {{ image webhook; transport {transport}; setting key {GW_KEY.hex()}; setting max {LIMIT}; {fast} }}
    unikernel bare {{ image webhook; transport {transport}; {fast} }}
    server {{
        listen 127.0.0.1:{port};
        location /hooks {{ unikernel_pass hooks header:x-hub-signature-256; }}
        location /default {{ unikernel_pass hooks; }}
        location /custom {{ unikernel_pass hooks header:x-signature; }}
        location /bare {{ unikernel_pass bare; }}
    }}
}}
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_webhook_over_http(uk_gateway, transport):
    gw = uk_gateway(lambda port: webhook_config(port, transport))
    port = gw.port
    assert {p["transport"] for p in status(gw).values()} == {transport}
    # Two instances, and a paused QEMU per pool.
    assert len(qemu_pids(gw)) == 2 + 2 and len(taps(gw)) == (2 + 2 if transport == "tap" else 0)
    body = json.dumps({"action": "push", "ref": "refs/heads/main"}).encode()
    ok = sign(body, GW_KEY).decode()

    def post(path, data, headers):
        return request(port, "POST", path, data, {"Content-Type": "application/json", **headers})

    assert post("/hooks", body, {"X-Hub-Signature-256": ok})[::2] == (204, b"")
    assert post("/hooks", body, {"X-Hub-Signature-256": ok[7:].upper()})[0] == 204
    assert post("/default", body, {"X-Hub-Signature-256": ok})[0] == 204
    assert post("/custom", body, {"X-Signature": ok})[0] == 204
    assert request(port, "GET", "/hooks", headers={"X-Hub-Signature-256": sign(b"", GW_KEY).decode()})[0] == 204
    # A chunked body is verified whole.
    assert request(port, "PUT", "/hooks", iter([body[:10], body[10:]]), {"X-Hub-Signature-256": ok})[0] == 204
    # Wrong or missing signature: 401, and no WWW-Authenticate (this is not an HTTP auth scheme).
    for headers in ({"X-Hub-Signature-256": sign(body, b"other key").decode()},
                    {"X-Hub-Signature-256": sign(body + b"\n", GW_KEY).decode()}, {},
                    {"X-Signature": ok}):
        code, got, _ = post("/hooks", body, headers)
        assert (code, "www-authenticate" in got) == (401, False), headers
    assert post("/custom", body, {"X-Hub-Signature-256": ok})[0] == 401
    # Malformed signatures: 400.
    for bad in ("sha1=" + hashlib.sha1(body).hexdigest(), ok[:-1], ok + "0", "sha256=" + "g" * 64, "nope"):
        assert post("/hooks", body, {"X-Hub-Signature-256": bad})[0] == 400, bad
    # The pool's `setting max` is the guest's body cap: 413 past it, and a fragmented body at it is fine.
    at_limit = random.Random(4).randbytes(LIMIT)
    assert post("/hooks", at_limit, {"X-Hub-Signature-256": sign(at_limit, GW_KEY).decode()})[0] == 204
    over = at_limit + b"!"
    assert post("/hooks", over, {"X-Hub-Signature-256": sign(over, GW_KEY).decode()})[0] == 413
    # A guest without a key cannot judge: 503.
    assert post("/bare", body, {"X-Hub-Signature-256": ok})[0] == 503
    assert "Traceback" not in gw.errors()
