"""A name server on 127.0.0.1 for tests: answers from a table and counts the questions it got.

Runs in a thread of the test process (nginx and the gateway are other processes). Each name
in the table maps to a dict: ``a`` / ``aaaa`` (address lists), ``ttl`` (seconds, default 60),
``cname`` (answer with that CNAME only), ``rcode`` (answer with that code), ``silent``
(never answer), ``delay`` (seconds before answering). Other names get NXDOMAIN.
"""

from __future__ import annotations

import collections
import socket
import threading
import time

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class DnsServer:
    def __init__(self, records: dict):
        self.records = {name.lower(): spec for name, spec in records.items()}
        self.questions: collections.Counter = collections.Counter()   # (name, "A"/"AAAA")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def asked(self, name: str, rdtype: str) -> int:
        with self.lock:
            return self.questions[(name.lower(), rdtype)]

    def stop(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(data)
            except Exception:       # the test's server ignores what it cannot read
                continue
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            with self.lock:
                self.questions[(name, rdtype)] += 1
            spec = self.records.get(name)
            if spec is not None and spec.get("silent"):
                continue
            reply = self._reply(query, question, spec, rdtype).to_wire()
            delay = spec.get("delay", 0) if spec else 0
            if delay:
                threading.Timer(delay, self._send, (reply, peer)).start()
            else:
                self._send(reply, peer)

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    @staticmethod
    def _reply(query, question, spec, rdtype):
        reply = dns.message.make_response(query)
        if spec is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return reply
        if "rcode" in spec:
            reply.set_rcode(spec["rcode"])
            return reply
        ttl = spec.get("ttl", 60)
        if "cname" in spec:
            reply.answer.append(dns.rrset.from_text(question.name, ttl, "IN", "CNAME",
                                                    spec["cname"] + "."))
            return reply
        addresses = spec.get(rdtype.lower(), [])
        if addresses:
            reply.answer.append(dns.rrset.from_text(question.name, ttl, "IN", rdtype, *addresses))
        return reply


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
