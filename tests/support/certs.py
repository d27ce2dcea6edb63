"""Certificates made in the test run: a trustme CA and server certificates as PEM files."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass
class Pair:
    """One certificate (with its chain) and key, as files, plus the leaf in DER form."""

    cert: str
    key: str
    der: bytes


class Certificates:
    """A root CA, an intermediate CA, and leaf certificates issued on demand under ``directory``."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.root = trustme.CA(key_type=trustme.KeyType.RSA)
        self.intermediate = self.root.create_child_ca(key_type=trustme.KeyType.RSA)
        self.ca_file = str(self.dir / "ca.pem")
        self.root.cert_pem.write_to_path(self.ca_file)

    def issue(self, label: str, *names: str, ecdsa: bool = False,
              via_intermediate: bool = False) -> Pair:
        """A leaf for ``names``; with ``via_intermediate`` its file holds the chain too."""
        issuer = self.intermediate if via_intermediate else self.root
        kind = trustme.KeyType.ECDSA if ecdsa else trustme.KeyType.RSA
        leaf = issuer.issue_cert(*names, key_type=kind)
        cert, key = self.dir / f"{label}.crt", self.dir / f"{label}.key"
        # cert_chain_pems: the leaf, then every CA up to (not including) the root.
        pems = leaf.cert_chain_pems if via_intermediate else leaf.cert_chain_pems[:1]
        cert.write_bytes(b"".join(p.bytes() for p in pems))
        leaf.private_key_pem.write_to_path(str(key))
        der = ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())
        return Pair(str(cert), str(key), der)

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the root only (so a chain must be sent)."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        return ctx
