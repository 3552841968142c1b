"""The report as data: what a radiologist edits, signs and amends, and what the SR and PDF
exports translate. Plain values only (no Qt, no files), so it serialises to JSON losslessly and
can be hashed and signed.

Every value that did not come from the reader's own typing keeps its provenance (the model and
version, its confidence, measured or AI, and the reader's decision), and stays unconfirmed until
the reader confirms it; a report with unconfirmed values cannot be signed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from viewer.core.errors import RadSightError

STATUSES = ("draft", "signed")
SOURCES = ("reader", "measured", "ai", "dicom")  # dicom: read from the images' headers (e.g. the study date)
DECISIONS = ("accepted", "edited", "rejected")


class ReportError(RadSightError):
    """A report that cannot be built, edited or signed as asked; the message says which field."""


def version_key(report_id: str, version: int) -> str:
    """The name of one version of a report, "ID/vN" (Report.key)."""
    return f"{report_id}/v{version}"


@dataclass(frozen=True)
class Provenance:
    """Where a value came from. `source` "ai" names the model; `decision` is the reader's verdict
    on the AI finding behind it (None while pending)."""

    source: str = "reader"
    model_id: str | None = None
    model_version: str | None = None
    confidence: float | None = None
    decision: str | None = None
    nodule_id: str | None = None        # the store's nodule row
    tracking_uid: str | None = None     # the nodule's tracking UID across studies

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ReportError(f"provenance source {self.source!r} is not one of {', '.join(SOURCES)}")
        if self.source == "ai" and not (self.model_id and self.model_version):
            raise ReportError("an AI value needs the model id and version it came from")
        if self.decision is not None and self.decision not in DECISIONS:
            raise ReportError(f"decision {self.decision!r} is not one of {', '.join(DECISIONS)}")


@dataclass(frozen=True)
class FieldValue:
    """One template field's value. `confirmed` is False for a prefilled value the reader has not
    yet confirmed; the reader's own typing is confirmed as typed."""

    value: Any
    unit: str | None = None             # UCUM, e.g. "mm", "mm3", "d"
    provenance: Provenance = field(default_factory=Provenance)
    confirmed: bool = True


@dataclass(frozen=True)
class Finding:
    """One nodule in the report's finding list: the NODULE record (DESIGN.md contract) as it will
    be reported, and where it came from."""

    record: dict
    provenance: Provenance
    confirmed: bool = False
    include: bool = True                # False: rejected by the reader, kept for the audit trail


@dataclass(frozen=True)
class KeyImage:
    """A picture the reader chose from a view: the PNG and the image it shows."""

    png_path: str
    caption: str = ""
    series_uid: str | None = None
    sop_instance_uid: str | None = None
    point_lps_mm: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class Report:
    """One version of a report. A signed version never changes: an amendment is a new version
    whose `predecessor_id` names it and whose `amendment_reason` says why."""

    id: str
    template_id: str
    study_uid: str
    series_uid: str | None = None
    version: int = 1
    status: str = "draft"
    values: dict[str, FieldValue] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    key_images: tuple[KeyImage, ...] = ()
    free_text: str = ""
    seg_paths: tuple[str, ...] = ()     # DICOM SEG files the findings' masks are in
    source_paths: tuple[str, ...] = ()  # the study folder(s) the report is about
    predecessor_id: str | None = None
    amendment_reason: str | None = None
    signer: str | None = None           # the signing certificate's subject common name
    signed_at: str | None = None        # UTC ISO 8601
    template_version: str | None = None  # the template's version when the report was drafted
    # What the AI results must be read with, from the analysis the draft was made from: e.g. that the
    # models ran outside their validated domain and why (viewer.inference.domain).
    ai_cautions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ReportError(f"report status {self.status!r} is not one of {', '.join(STATUSES)}")
        if self.version < 1:
            raise ReportError(f"report version must be 1 or more; got {self.version}")
        if self.version > 1 and not (self.predecessor_id and self.amendment_reason):
            raise ReportError(f"report {self.id} version {self.version} is an amendment: it needs its "
                              "predecessor and a reason")

    @property
    def unconfirmed(self) -> list[str]:
        """What still waits for the reader: field ids and finding ids."""
        fields = [name for name, v in self.values.items() if not v.confirmed]
        findings = [f"finding {f.record.get('id')}" for f in self.findings if f.include and not f.confirmed]
        return fields + findings

    @property
    def key(self) -> str:
        """This version's name, "ID/vN": what an amendment's `predecessor_id` holds."""
        return version_key(self.id, self.version)

    def edited(self, **changes) -> "Report":
        """A copy with `changes` (dataclass fields); refused for a signed version."""
        self._editable()
        return replace(self, **changes)

    def with_value(self, name: str, value: FieldValue) -> "Report":
        self._editable()
        return replace(self, values={**self.values, name: value})

    def without_value(self, name: str) -> "Report":
        self._editable()
        return replace(self, values={k: v for k, v in self.values.items() if k != name})

    def _editable(self) -> None:
        if self.status == "signed":
            raise ReportError(f"report {self.id} version {self.version} is signed and cannot change; "
                              "amend it instead")

    def to_json(self) -> dict:
        return asdict(self)

    def canonical_bytes(self) -> bytes:
        """The exact bytes a signature over the report's content covers (sorted keys, no spaces)."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    @staticmethod
    def from_json(data: dict) -> "Report":
        """A report from its JSON (as to_json wrote it); every part is checked on the way in."""
        try:
            values = {name: FieldValue(v["value"], v.get("unit"), Provenance(**v.get("provenance") or {}),
                                       bool(v.get("confirmed", True)))
                      for name, v in (data.get("values") or {}).items()}
            findings = tuple(Finding(dict(f["record"]), Provenance(**f.get("provenance") or {}),
                                     bool(f.get("confirmed", False)), bool(f.get("include", True)))
                             for f in data.get("findings") or ())
            images = tuple(KeyImage(**{**k, "point_lps_mm": tuple(k["point_lps_mm"]) if k.get("point_lps_mm") else None})
                           for k in data.get("key_images") or ())
            rest = {k: v for k, v in data.items() if k not in ("values", "findings", "key_images")}
            for key in ("seg_paths", "source_paths", "ai_cautions"):
                rest[key] = tuple(rest.get(key) or ())
            return Report(values=values, findings=findings, key_images=images, **rest)
        except (KeyError, TypeError) as exc:
            raise ReportError(f"report JSON is incomplete or has an unknown field: {exc}") from None
