"""The reader's signing identity: an X.509 certificate with its private key, kept in a PKCS#12
file behind a password (read and written with `cryptography`), and a first-run helper that makes
a self-signed demo identity for trying the product. A reader's own identity must be behind a
password (refused otherwise); the demo identity's password is public, so it is as good as none.

A demo identity says so in its subject (OU "Demo identity - not for clinical use"), so a report
signed with it can never pass for one signed by a real reader's institution certificate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from viewer.core.errors import RadSightError

DEMO_UNIT = "Demo identity - not for clinical use"
DEMO_PASSWORD = b"radsight-demo"


class IdentityError(RadSightError):
    """A signing identity that cannot be used: the message names the file and what is wrong."""


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key, loaded and checked (key matches, dates valid today)."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...] = ()
    path: Path | None = None

    @property
    def common_name(self) -> str:
        return _name_part(self.certificate.subject, NameOID.COMMON_NAME) or self.certificate.subject.rfc4514_string()

    @property
    def organization(self) -> str | None:
        return _name_part(self.certificate.subject, NameOID.ORGANIZATION_NAME)

    @property
    def is_demo(self) -> bool:
        return _name_part(self.certificate.subject, NameOID.ORGANIZATIONAL_UNIT_NAME) == DEMO_UNIT

    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _name_part(name: x509.Name, oid) -> str | None:
    parts = name.get_attributes_for_oid(oid)
    return str(parts[0].value) if parts else None


def _password(password: bytes | str | None) -> bytes | None:
    if password is None or isinstance(password, bytes):
        return password
    return password.encode()


def check_validity(certificate: x509.Certificate, at: dt.datetime | None = None) -> str | None:
    """None when `certificate` is valid at `at` (default now, UTC); else what is wrong, with dates."""
    at = at or dt.datetime.now(dt.UTC)
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if at < start:
        return f"certificate not yet valid: valid from {start.isoformat()}, checked at {at.isoformat(timespec='seconds')}"
    if at > end:
        return f"certificate expired on {end.isoformat()} (checked at {at.isoformat(timespec='seconds')})"
    return None


def load_identity(path: Path | str, password: bytes | str | None) -> Identity:
    """The identity in the PKCS#12 file at `path`. Refuses a file that is not PKCS#12, a wrong
    password, a file without a key or certificate and a certificate outside its validity dates."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the signing identity ({exc.strerror})") from None
    # PKCS#12 is a DER SEQUENCE; anything else (PEM text, an empty file) is not one at all, which
    # deserves a different message from a wrong password (cryptography raises the same ValueError).
    if not data.startswith(b"\x30"):
        kind = "PEM text" if data.lstrip().startswith(b"-----BEGIN") else f"{len(data)} bytes that are not DER"
        raise IdentityError(f"{path}: not a PKCS#12 (.p12/.pfx) file ({kind}); export the certificate "
                            "together with its private key as PKCS#12")
    try:
        bundle = pkcs12.load_pkcs12(data, _password(password))
    except ValueError:
        bundle = _without_password(data)  # a password given for a bare key: say that it is bare, below
    if bundle is None:
        raise IdentityError(f"{path}: the PKCS#12 file could not be opened: wrong password, or the file "
                            "is damaged") from None
    key, cert = bundle.key, bundle.cert.certificate if bundle.cert else None
    if key is None or cert is None:
        raise IdentityError(f"{path}: the PKCS#12 file holds no {'private key' if key is None else 'certificate'}; "
                            "a signing identity needs both")
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise IdentityError(f"{path}: the private key is {type(key).__name__}; DICOM signatures need RSA or ECDSA")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise IdentityError(f"{path}: the private key does not belong to the certificate "
                            f"({cert.subject.rfc4514_string()})")
    problem = check_validity(cert)
    if problem:
        raise IdentityError(f"{path}: {problem}; renew the signing certificate")
    chain = tuple(c.certificate for c in bundle.additional_certs)
    identity = Identity(cert, key, chain, path)
    if not identity.is_demo and _without_password(data) is not None:
        raise IdentityError(f"{path}: the private key of {identity.common_name} is not protected by a password, so "
                            "anyone who can read the file can sign as them; export it again with a password "
                            "(e.g. openssl pkcs12 -export -aes256) and give that password")
    return identity


def _without_password(data: bytes):
    """The PKCS#12 bundle when it opens with no password, else None. A reader's own key must sit
    behind a passphrase; only the demo identity may do without one (its password is public,
    DEMO_PASSWORD, and its certificate says it is a demo)."""
    for empty in (None, b""):
        try:
            return pkcs12.load_pkcs12(data, empty)
        except ValueError:
            continue
    return None


def create_demo_identity(path: Path | str, common_name: str = "RadSight Demo Reader",
                         password: bytes | str = DEMO_PASSWORD, days: int = 365) -> Path:
    """Write a self-signed RSA-2048 identity (digitalSignature + nonRepudiation, `days` valid) as a
    PKCS#12 file protected by `password`. For trying the product: its OU says it is a demo."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RadSight"),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, DEMO_UNIT)])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    blob = pkcs12.serialize_key_and_certificates(
        common_name.encode(), key, cert, None, serialization.BestAvailableEncryption(_password(password)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    path.chmod(0o600)
    return path
