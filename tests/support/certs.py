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

    def crl(self, path: str, *revoked: Pair) -> str:
        """A PEM CRL from the root revoking ``revoked`` (leaves the root issued)."""
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        key = serialization.load_pem_private_key(self.root.private_key_pem.bytes(), None)
        issuer = x509.load_pem_x509_certificate(self.root.cert_pem.bytes())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
                   .last_update(now - datetime.timedelta(hours=1))
                   .next_update(now + datetime.timedelta(days=1)))
        for pair in revoked:
            serial = x509.load_der_x509_certificate(pair.der).serial_number
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - datetime.timedelta(minutes=5)).build())
        crl = builder.sign(key, hashes.SHA256())
        Path(path).write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return path


def encrypted_key(pair: Pair, path: str, password: bytes) -> str:
    """``pair``'s key written to ``path`` encrypted with ``password`` (PKCS#8 PEM)."""
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(Path(pair.key).read_bytes(), None)
    Path(path).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password)))
    return path
