"""Signing identities (PKCS#12) and report signing: a demo identity loads with its password and is
refused with a wrong one, files that are not PKCS#12 and expired certificates are refused with the
file named, and a report with unconfirmed values cannot be signed."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from viewer.report.identity import (
    DEMO_PASSWORD,
    DEMO_UNIT,
    IdentityError,
    create_demo_identity,
    load_identity,
)
from viewer.report.model import FieldValue, Finding, Provenance, Report, ReportError
from viewer.report.signing import sign_report


@pytest.fixture(scope="module")
def demo_p12(tmp_path_factory):
    return create_demo_identity(tmp_path_factory.mktemp("id") / "reader.p12", "Jane Q Reader", password="s3cret")


def test_demo_identity_loads_with_its_password(demo_p12):
    identity = load_identity(demo_p12, "s3cret")
    assert identity.common_name == "Jane Q Reader"
    assert identity.is_demo
    cert = identity.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == DEMO_UNIT
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 364 <= days <= 366
    assert identity.private_key.key_size == 2048
    assert identity.private_key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_wrong_password_and_non_pkcs12_are_refused_naming_the_file(demo_p12, tmp_path):
    with pytest.raises(IdentityError, match="wrong password") as err:
        load_identity(demo_p12, b"not-it")
    assert str(demo_p12) in str(err.value)
    pem = tmp_path / "cert.pem"
    pem.write_bytes(load_identity(demo_p12, "s3cret").certificate_pem())
    with pytest.raises(IdentityError, match="not a PKCS#12.*PEM") as err:
        load_identity(pem, "s3cret")
    assert str(pem) in str(err.value)
    with pytest.raises(IdentityError, match="cannot read"):
        load_identity(tmp_path / "missing.p12", "x")


def test_expired_certificate_is_refused(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Old Reader")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now - dt.timedelta(days=35)).sign(key, hashes.SHA256()))
    path = tmp_path / "old.p12"
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"old", key, cert, None, serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(IdentityError, match="expired") as err:
        load_identity(path, "pw")
    assert str(path) in str(err.value)


def _own_identity(path, encryption) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dr Own Key")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(2).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"own", key, cert, None, encryption))


def test_own_identity_needs_a_password_the_demo_does_not(tmp_path, demo_p12):
    """A reader's key readable without a passphrase is refused (anyone with the file could sign as
    them); the same kind of key behind a password loads; the demo identity, whose password is
    public, loads and says it is a demo."""
    bare = tmp_path / "bare.p12"
    _own_identity(bare, serialization.NoEncryption())
    for password in (None, "", "anything"):
        with pytest.raises(IdentityError, match="not protected by a password") as err:
            load_identity(bare, password)
        assert str(bare) in str(err.value) and "Dr Own Key" in str(err.value)
    locked = tmp_path / "locked.p12"
    _own_identity(locked, serialization.BestAvailableEncryption(b"long passphrase"))
    assert not load_identity(locked, "long passphrase").is_demo
    demo = create_demo_identity(tmp_path / "demo.p12")  # behind the public DEMO_PASSWORD: nothing to ask the user
    assert load_identity(demo, DEMO_PASSWORD).is_demo
    assert load_identity(demo_p12, "s3cret").is_demo


def _report(confirmed: bool) -> Report:
    record = {"id": "N1", "tracking_uid": "2.25.1", "centre_lps_mm": [50.0, 10.0, 20.0], "volume_mm3": 300.0}
    return Report(id="R1", template_id="ct-chest", study_uid="1.2.3",
                  values={"impression": FieldValue("Solid nodule.", confirmed=confirmed,
                                                   provenance=Provenance(source="measured")),
                          "comparison": FieldValue("None")},
                  findings=(Finding(record, Provenance(source="ai", model_id="m", model_version="1"),
                                    confirmed=confirmed),))


def test_sign_refuses_unconfirmed_values_listing_them(demo_p12):
    identity = load_identity(demo_p12, "s3cret")
    with pytest.raises(ReportError) as err:
        sign_report(_report(confirmed=False), identity)
    assert "impression" in str(err.value) and "finding N1" in str(err.value)
    assert "comparison" not in str(err.value)


def test_sign_freezes_the_report_with_signer_and_utc_time(demo_p12):
    identity = load_identity(demo_p12, "s3cret")
    at = dt.datetime.now(dt.timezone(dt.timedelta(hours=2))).replace(microsecond=0)
    signed = sign_report(_report(confirmed=True), identity, at=at)
    assert signed.status == "signed" and signed.signer == "Jane Q Reader"
    assert dt.datetime.fromisoformat(signed.signed_at) == at
    assert signed.signed_at.endswith("+00:00")
    with pytest.raises(ReportError, match="signed"):
        signed.with_value("impression", FieldValue("changed"))
    with pytest.raises(ReportError, match="already signed"):
        sign_report(signed, identity)


def test_signing_outside_the_certificate_validity_is_refused(demo_p12):
    identity = load_identity(demo_p12, "s3cret")
    with pytest.raises(ReportError, match="not yet valid"):
        sign_report(_report(confirmed=True), identity, at=dt.datetime(2001, 1, 1, tzinfo=dt.UTC))


def test_a_changed_byte_in_the_embedded_certificate_is_caught(demo_p12):
    """The MAC still verifies with the key the certificate carries, so the certificate's own
    signature is what shows that its name or validity was changed."""
    import pydicom

    from viewer.report.dicom_signature import add_signature, verify_signatures

    ds = pydicom.Dataset()
    ds.SOPInstanceUID = "1.2.3.4"
    ds.PatientID = "RS-TEST-0001"
    ds.ContentDate = "20260115"
    add_signature(ds, load_identity(demo_p12, "s3cret"))
    assert not [p for c in verify_signatures(ds) for p in c.problems]
    item = ds.DigitalSignaturesSequence[0]
    der = bytearray(item.CertificateOfSigner)
    name = "RadSight".encode()
    at = der.find(name)
    assert at > 0
    der[at] ^= 0x01
    item.CertificateOfSigner = bytes(der)
    problems = [p for c in verify_signatures(ds) for p in c.problems]
    assert problems and any("certificate" in p for p in problems), problems
