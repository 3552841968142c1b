"""PAdES signatures on report PDFs (ETSI EN 319 142, baseline B-B: a CAdES detached signature in
an incremental update), made and checked with pyHanko, so poppler's `pdfsig` and any PAdES
validator read them the same way.

The signing identity is any object with `certificate` and `private_key` (pyca `cryptography`
objects), `chain` (further certificates) and `common_name`, as viewer.report.identity gives.
No time-stamp authority is reachable from a reading room, hence B-B rather than B-T.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from viewer.report.model import ReportError

FIELD_NAME = "RadSightReportSignature"
PADES_SUBFILTER = "/ETSI.CAdES.detached"
SELF_SIGNED_NOTE = ("self-signed (demo identity): the certificate is its own trust root, so the "
                    "signature proves the file is unchanged but no authority vouches for the signer")
# A reader's certificate may carry either key usage: demo identities and many hospital CAs set
# only digitalSignature, qualified ones nonRepudiation.
_KEY_USAGE = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False)


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def sign_pdf_bytes(data: bytes, identity: Any, *, reason: str, location: str | None = None) -> bytes:
    """The PDF `data` with an invisible PAdES B-B signature by `identity` appended."""
    try:
        cert = _asn1_cert(identity.certificate)
        key = asn1_keys.PrivateKeyInfo.load(identity.private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        chain = [_asn1_cert(c) for c in (getattr(identity, "chain", None) or ())]
    except (AttributeError, TypeError, ValueError) as exc:
        raise ReportError(f"the signing identity has no usable certificate and private key ({exc}); "
                          "load it with viewer.report.identity.load_identity") from None
    signer = signers.SimpleSigner(cert, key, SimpleCertificateStore.from_certs([cert, *chain]))
    meta = signers.PdfSignatureMetadata(field_name=FIELD_NAME, subfilter=fields.SigSeedSubFilter.PADES,
                                        md_algorithm="sha256", reason=reason, location=location,
                                        name=getattr(identity, "common_name", None))
    out = io.BytesIO()
    signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)), meta, signer=signer, output=out)
    return out.getvalue()


def verify_pdf(path: str | Path, trust_roots: Iterable[x509.Certificate] = ()) -> dict:
    """Check every signature in a report PDF: {"valid", "signer", "signed_at", "problems", "notes"}.

    Valid means: at least one signature, each PAdES, its digest matches the signed bytes, the
    signature value verifies, it covers the whole file (nothing appended after signing) and the
    signer's certificate chains to a trust root. A self-signed signer is taken as its own root
    (the demo identity) and said so in "notes"; the integrity checks are the same."""
    path = Path(path)
    result: dict = {"valid": False, "signer": None, "signed_at": None, "problems": [], "notes": []}
    problems: list[str] = result["problems"]
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(f"cannot read {path}: {exc.strerror or exc}")
        return result
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        signatures = reader.embedded_signatures
    except Exception as exc:  # pyHanko raises many kinds on a damaged file; all mean unreadable
        problems.append(f"{path.name} is not a readable PDF ({type(exc).__name__}: {exc}); it may have "
                        "been changed or cut short after signing")
        return result
    if not signatures:
        problems.append(f"{path.name} has no digital signature: it is a draft or was never signed")
        return result
    roots = [_asn1_cert(c) for c in trust_roots]
    for index, sig in enumerate(signatures, start=1):
        label = f"signature {index} ({sig.field_name})"
        try:
            _check_signature(sig, label, roots, result)
        except Exception as exc:  # a damaged CMS blob or signed range cannot be evaluated at all
            problems.append(f"{label} in {path.name} cannot be evaluated ({type(exc).__name__}: {exc}); "
                            "the file was probably changed after signing")
    result["valid"] = not problems
    return result


def _check_signature(sig: Any, label: str, roots: list, result: dict) -> None:
    problems: list[str] = result["problems"]
    cert = sig.signer_cert
    result["signer"] = cert.subject.native.get("common_name") or cert.subject.human_friendly
    subfilter = sig.sig_object.get("/SubFilter")
    if str(subfilter) != PADES_SUBFILTER:
        problems.append(f"{label} is {subfilter}, not a PAdES signature ({PADES_SUBFILTER})")
    self_signed = cert.self_signed in ("yes", "maybe")
    context = ValidationContext(trust_roots=[cert] if self_signed else roots, allow_fetching=False,
                                revocation_mode="soft-fail")
    status = validate_pdf_signature(sig, context, key_usage_settings=_KEY_USAGE)
    if status.signer_reported_dt is not None:
        result["signed_at"] = status.signer_reported_dt.isoformat()
    ranges = sig.sig_object.get("/ByteRange")
    if not status.intact:
        problems.append(f"{label}: the signed bytes (ranges {list(ranges)}) do not match the digest in the "
                        "signature: the file was changed after signing")
    elif not status.valid:
        problems.append(f"{label}: the signature value does not verify with the certificate of "
                        f"{result['signer']}: the signature or certificate was replaced")
    if status.coverage is None or status.coverage.name != "ENTIRE_FILE":
        level = status.modification_level.name if status.modification_level is not None else "unknown"
        problems.append(f"{label} covers only part of the file ({status.coverage.name if status.coverage else 'none'}; "
                        f"changes after signing: {level}): content was added after signing")
    if not status.trusted and status.intact and status.valid:   # a broken signature is never trusted: said above
        if self_signed:
            problems.append(f"{label}: the self-signed certificate of {result['signer']} is not usable for "
                            "signing (expired, not yet valid or wrong key usage)")
        else:
            problems.append(f"{label}: the certificate of {result['signer']} (issuer "
                            f"{cert.issuer.human_friendly}) chains to no trusted root; pass the issuing CA")
    elif self_signed and SELF_SIGNED_NOTE not in result["notes"]:
        result["notes"].append(SELF_SIGNED_NOTE)
