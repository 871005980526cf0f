"""Certificates for the lab's TLS ensemble: a CA of its own, a server certificate for the
servers' addresses, a client certificate, and whatever a test needs to be refused (a
certificate of another CA, a server certificate for another name).

Keys are EC P-256 in PKCS#8 PEM: ZooKeeper's PEM loader (`PemReader`) reads PKCS#8 keys
only, and P-256 keys cost a millisecond to make. The server's key store is one PEM file
holding its certificate and key, as ZooKeeper's `ssl.keyStore.type=PEM` expects.

Guaranteed: every file is written under the directory given, readable by its owner only
(keys). Not guaranteed: anything a production CA does (revocation, rotation, audit).
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = datetime.timedelta(days=2)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_names(names: Sequence[str]) -> list[x509.GeneralName]:
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    return alt


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        os.chmod(path, 0o600)
    return path


@dataclasses.dataclass(frozen=True)
class Issued:
    """A certificate and its key, as files; `keystore` holds both (ZooKeeper's form)."""

    cert: Path
    key: Path
    keystore: Path


class Authority:
    """A CA that issues leaf certificates into `directory`."""

    def __init__(self, directory: Path, name: str = "leader-sidecar lab CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.stem = name.replace(" ", "-")
        self.ca = _write(directory / f"{self.stem}.pem", _pem_cert(self._cert))

    def issue(self, stem: str, names: Sequence[str] = ()) -> Issued:
        """A certificate for `names` (DNS names or IP addresses; none for a client), good
        for both server and client authentication, and its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0] if names else stem))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(_alt_names(names)), critical=False
            )
        cert = builder.sign(self._key, hashes.SHA256())
        directory = self.directory
        key_pem, cert_pem = _pem_key(key), _pem_cert(cert)
        return Issued(
            cert=_write(directory / f"{stem}.crt", cert_pem),
            key=_write(directory / f"{stem}.key", key_pem, private=True),
            keystore=_write(directory / f"{stem}.keystore.pem", cert_pem + key_pem, private=True),
        )


@dataclasses.dataclass(frozen=True)
class EnsembleTls:
    """What a TLS ensemble and its clients use: the CA both trust, the servers' key store
    (one certificate for every server's address) and a client's certificate."""

    ca: Path
    server: Issued
    client: Issued


def ensemble_tls(directory: Path, hosts: Sequence[str]) -> EnsembleTls:
    """A fresh CA with a server certificate for `hosts` and a client certificate, written
    into `directory`."""
    authority = Authority(directory)
    names = list(dict.fromkeys(hosts))
    return EnsembleTls(
        ca=authority.ca,
        server=authority.issue("server", names),
        client=authority.issue("client"),
    )
