"""DICOM digital signatures (PS3.15 Annex C Digital Signature Profiles; PS3.3 C.12.1.1.3 Digital
Signatures Sequence (FFFA,FFFA) and MAC Parameters Sequence (4FFE,0001)) on a pydicom dataset.

pydicom has no signature support and no maintained Python library writes PS3.15 signatures, so
the byte stream is built here. It follows PS3.3 C.12.1.1.3.1.1 as DCMTK's dcmsign reads it (the
validator our output must pass): the signed Data Elements in tag order, encoded in Explicit VR
Little Endian; sequences as tag, VR and reserved bytes without their length, each item as its
Item tag without length followed by its elements (recursively), and a Sequence Delimitation tag
(no length) after the last item; then, from the Digital Signatures Sequence item, every element
except Certificate of Signer, Signature and the certified timestamp. The MAC (SHA-256) of that
stream is signed with RSA PKCS #1 v1.5 (DigestInfo) or ECDSA (DER), as the RSA/ECDSA profiles say.

Values are taken as their raw bytes where the dataset was read from a file, so verification
checks what is on disk, not what pydicom would write today.
"""

from __future__ import annotations

import datetime as dt
import struct
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID
from pydicom import Dataset, Sequence
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from viewer.report.identity import Identity, check_validity

MAC_PARAMETERS = Tag(0x4FFE, 0x0001)
DIGITAL_SIGNATURES = Tag(0xFFFA, 0xFFFA)
# Signature item elements left out of the MAC (DCMTK SiMACConstructor; PS3.3 C.12.1.1.3.1.2).
NOT_IN_MAC = {Tag(0x0400, 0x0115), Tag(0x0400, 0x0120), Tag(0x0400, 0x0305), Tag(0x0400, 0x0310)}
MAC_ALGORITHMS = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}
ITEM = b"\xfe\xff\x00\xe0"
SEQUENCE_END = b"\xfe\xff\xdd\xe0"
# CID 7007 Signature Purpose, coding scheme ASTM-sigpurpose (ASTM E1762), PS3.16.
PURPOSES = {"author": ("1", "Author's Signature"), "verification": ("5", "Verification Signature")}


@dataclass
class SignatureCheck:
    """The outcome of checking one signature: `problems` is empty when it is valid."""

    uid: str | None = None
    signer: str | None = None
    signed_at: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.problems


def signable(tag: int) -> bool:
    """Whether a top-level element can be in Data Elements Signed (PS3.15 C.12.1.1.3.1.1): no
    group lengths, no file meta (< 0008), Length to End, signature sequences or padding."""
    tag = Tag(tag)
    return not (tag.element == 0 or tag.group < 0x0008 or tag == 0x00080001 or tag.group == 0xFFFA
                or tag == MAC_PARAMETERS or tag == 0xFFFCFFFC)


def _encode_element(out: DicomBytesIO, ds: Dataset, tag: int) -> None:
    elem = ds.get_item(tag)
    vr = elem.VR
    if vr == "SQ":
        # A raw sequence must be parsed into its items to encode it without lengths.
        items = ds[tag].value
        out.write(struct.pack("<HH", elem.tag.group, elem.tag.element) + b"SQ\x00\x00")
        for item in items:
            out.write(ITEM)
            for inner in sorted(item.keys()):
                _encode_element(out, item, inner)
        out.write(SEQUENCE_END)
        return
    write_data_element(out, elem, ds._character_set)


def mac_stream(ds: Dataset, tags: list[int], signature_item: Dataset) -> bytes:
    """The byte stream the MAC covers: `tags` of `ds` (in tag order, those present) and the
    signature item's elements except the certificate, the signature and the timestamp."""
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    for tag in sorted(Tag(t) for t in tags):
        if tag in ds:
            _encode_element(out, ds, tag)
    for tag in sorted(signature_item.keys()):
        if tag not in NOT_IN_MAC:
            _encode_element(out, signature_item, tag)
    return out.getvalue()


def der_trimmed(data: bytes) -> bytes:
    """A DER value without the pad byte an OB element adds to an odd length (the certificate,
    an ECDSA signature): the outer TLV's own length says where it ends."""
    if len(data) < 2:
        return data
    first = data[1]
    if first < 0x80:
        return data[:2 + first]
    size = first & 0x7F
    return data[:2 + size + int.from_bytes(data[2:2 + size], "big")]


def _digest(data: bytes, algorithm: str) -> bytes:
    h = hashes.Hash(MAC_ALGORITHMS[algorithm]())
    h.update(data)
    return h.finalize()


def _dicom_datetime(at: dt.datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S.%f") + at.strftime("%z")


def parse_dicom_datetime(value: str) -> dt.datetime | None:
    """A DICOM DT value ("YYYYMMDDHHMMSS.FFFFFF&ZZXX") as an aware datetime; None if unreadable."""
    value = str(value).strip()
    for fmt in ("%Y%m%d%H%M%S.%f%z", "%Y%m%d%H%M%S%z", "%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S"):
        try:
            parsed = dt.datetime.strptime(value, fmt)
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def add_signature(ds: Dataset, identity: Identity, at: dt.datetime | None = None, purpose: str = "author",
                  algorithm: str = "SHA256") -> str:
    """Sign every signable top-level element of `ds` in place; returns the Digital Signature UID.
    `ds` must hold the values exactly as they will be written (e.g. just read back from bytes)."""
    at = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    macs = ds.get(MAC_PARAMETERS)
    signatures = ds.get(DIGITAL_SIGNATURES)
    used = {int(i.MACIDNumber) for seq in (macs, signatures) if seq is not None for i in seq.value}
    mac_id = min(set(range(len(used) + 1)) - used)
    tags = [t for t in sorted(ds.keys()) if signable(t)]

    item = Dataset()
    item.MACIDNumber = mac_id
    item.DigitalSignatureUID = generate_uid()
    item.DigitalSignatureDateTime = _dicom_datetime(at)
    item.CertificateType = "X509_1993_SIG"
    item.CertificateOfSigner = identity.certificate_der()
    code_value, meaning = PURPOSES[purpose]
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = code_value, "ASTM-sigpurpose", meaning
    item.DigitalSignaturePurposeCodeSequence = Sequence([code])

    digest = _digest(mac_stream(ds, tags, item), algorithm)
    prehashed = Prehashed(MAC_ALGORITHMS[algorithm]())
    key = identity.private_key
    if isinstance(key, rsa.RSAPrivateKey):
        item.Signature = key.sign(digest, padding.PKCS1v15(), prehashed)
    else:
        item.Signature = key.sign(digest, ec.ECDSA(prehashed))

    mac = Dataset()
    mac.MACIDNumber = mac_id
    mac.MACCalculationTransferSyntaxUID = ExplicitVRLittleEndian
    mac.MACAlgorithm = algorithm
    mac.DataElementsSigned = tags
    if macs is None:
        ds.add_new(MAC_PARAMETERS, "SQ", Sequence())
    if signatures is None:
        ds.add_new(DIGITAL_SIGNATURES, "SQ", Sequence())
    ds[MAC_PARAMETERS].value.append(mac)
    ds[DIGITAL_SIGNATURES].value.append(item)
    return str(item.DigitalSignatureUID)


def verify_signatures(ds: Dataset, now: dt.datetime | None = None) -> list[SignatureCheck]:
    """Check every signature in the top level of `ds` (an empty list: there is none): MAC and
    signature over the signed elements, signed elements present, certificate valid when signed
    and now."""
    if DIGITAL_SIGNATURES not in ds:
        return []
    macs = {}
    for mac in ds[MAC_PARAMETERS].value if MAC_PARAMETERS in ds else ():
        macs[int(mac.MACIDNumber)] = mac
    checks = []
    for item in ds[DIGITAL_SIGNATURES].value:
        check = SignatureCheck(uid=str(item.get("DigitalSignatureUID", "")) or None,
                               signed_at=str(item.get("DigitalSignatureDateTime", "")) or None)
        checks.append(check)
        mac = macs.get(int(item.get("MACIDNumber", -1)))
        if mac is None:
            check.problems.append(f"signature {check.uid}: no MAC Parameters item with MAC ID "
                                  f"{item.get('MACIDNumber')}")
            continue
        algorithm = str(mac.get("MACAlgorithm", ""))
        if algorithm not in MAC_ALGORITHMS:
            check.problems.append(f"signature {check.uid}: MAC algorithm {algorithm!r} is not supported "
                                  f"({', '.join(MAC_ALGORITHMS)})")
            continue
        if str(mac.get("MACCalculationTransferSyntaxUID", "")) != ExplicitVRLittleEndian:
            check.problems.append(f"signature {check.uid}: MAC transfer syntax "
                                  f"{mac.get('MACCalculationTransferSyntaxUID')} is not Explicit VR Little Endian")
            continue
        if str(item.get("CertificateType", "")) != "X509_1993_SIG":
            check.problems.append(f"signature {check.uid}: certificate type {item.get('CertificateType')!r} "
                                  "is not X509_1993_SIG")
            continue
        try:
            cert = x509.load_der_x509_certificate(der_trimmed(bytes(item.CertificateOfSigner)))
        except (ValueError, AttributeError):
            check.problems.append(f"signature {check.uid}: the certificate of the signer cannot be read")
            continue
        names = [a.value for a in cert.subject if a.oid == NameOID.COMMON_NAME]
        check.signer = str(names[0]) if names else cert.subject.rfc4514_string()
        altered = _self_signature_problem(cert)
        if altered:
            check.problems.append(f"signature {check.uid}: {altered}")
        signed = mac.get("DataElementsSigned")
        tags = [Tag(t) for t in (list(signed) if isinstance(signed, (list, MultiValue)) else
                                 [signed] if signed is not None else [])]
        missing = [t for t in tags if t not in ds]
        if missing:
            check.problems.append(f"signature {check.uid}: {len(missing)} signed element(s) are missing, "
                                  f"first {missing[0]}")
        digest = _digest(mac_stream(ds, tags, item), algorithm)
        prehashed = Prehashed(MAC_ALGORITHMS[algorithm]())
        public = cert.public_key()
        try:
            if isinstance(public, rsa.RSAPublicKey):
                public.verify(bytes(item.Signature), digest, padding.PKCS1v15(), prehashed)
            elif isinstance(public, ec.EllipticCurvePublicKey):
                public.verify(der_trimmed(bytes(item.Signature)), digest, ec.ECDSA(prehashed))
            else:
                check.problems.append(f"signature {check.uid}: key type {type(public).__name__} not supported")
        except InvalidSignature:
            check.problems.append(f"signature {check.uid}: MAC mismatch or signature invalid: the signed "
                                  f"data elements ({len(tags)}) changed after signing, or the signature was "
                                  "not made with this certificate's key")
        when = parse_dicom_datetime(check.signed_at or "")
        if when is None:
            check.problems.append(f"signature {check.uid}: signature date/time {check.signed_at!r} is unreadable")
        else:
            problem = check_validity(cert, when)
            if problem:
                check.problems.append(f"signature {check.uid} made at {when.isoformat()}: {problem}")
        problem = check_validity(cert, now)
        if problem and not any("certificate" in p for p in check.problems):
            check.problems.append(f"signature {check.uid}: {problem}")
    return checks


def _self_signature_problem(cert: x509.Certificate) -> str | None:
    """A certificate that names itself as issuer must verify with its own key: a changed byte in
    it (name, validity, key) breaks its signature even where the report's MAC still verifies with
    the key it carries. One issued by someone else cannot be checked without that issuer, which
    RadSight has no store of yet: said, as verify_pdf says it for PDFs."""
    if cert.issuer != cert.subject:
        return (f"the signer's certificate was issued by {cert.issuer.rfc4514_string()}, whose certificate "
                "RadSight does not have, so the certificate cannot be checked (or it was altered)")
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return "the signer's self-signed certificate has been altered (its own signature does not verify)"
    return None

