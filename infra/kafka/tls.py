"""A private CA and the local broker's TLS certificate, made with ``cryptography``.

``pcfx broker start --secure`` calls :func:`make_broker_tls` once per state directory:

- ``tls/ca.pem`` — the CA certificate clients trust (``ssl.ca.location`` / a PEM truststore);
- ``tls/ca.key.pem`` — the CA's private key (mode 0600; needed only to issue more certificates);
- ``tls/broker.pem`` — the broker's PKCS#8 private key followed by its certificate chain, the
  file Kafka's ``ssl.keystore.type=PEM`` keystore reads (mode 0600).

The broker certificate names ``localhost`` and ``127.0.0.1`` (the listener's address), so clients
keep hostname verification on.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["BrokerTls", "make_broker_tls"]

VALID_DAYS = 825


@dataclass(frozen=True)
class BrokerTls:
    ca_file: Path
    ca_key_file: Path
    keystore_file: Path


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def make_broker_tls(directory: Path, *, hosts: tuple[str, ...] = ("localhost",)) -> BrokerTls:
    """Create (or reuse, if all three files exist) the CA and the broker certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    tls = BrokerTls(directory / "ca.pem", directory / "ca.key.pem", directory / "broker.pem")
    if all(p.is_file() for p in (tls.ca_file, tls.ca_key_file, tls.keystore_file)):
        return tls
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pcf-exchange local"),
            x509.NameAttribute(NameOID.COMMON_NAME, "pcf-exchange local broker CA"),
        ]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    broker_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pcf-exchange local"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "pcfx-broker"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(broker_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    _write_private(
        tls.ca_key_file,
        ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write_private(
        tls.keystore_file,
        broker_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + broker_cert.public_bytes(pem)
        + ca_cert.public_bytes(pem),
    )
    tls.ca_file.write_bytes(ca_cert.public_bytes(pem))
    os.chmod(tls.ca_file, 0o644)
    return tls
