"""A report as a DICOM Comprehensive 3D SR with the TID 1500 Measurement Report (highdicom), one
TID 1411 Volumetric ROI Measurements group per nodule, and, once the report is signed, a PS3.15
digital signature (viewer.report.dicom_signature) over every top-level element.

Codes (PS3.16 unless said): finding SCT 27925004 "Nodule" (SCT 4147007 "Mass" for a lesion
> 30 mm); finding site SCT 39607008 "Lung" with laterality SCT 272741003 (left/right from the sign of the LPS x of the centre); volume SCT
118565006, long axis SCT 103339001, short axis SCT 103340004, diameter SCT 81827009 with
derivation SCT 373098007 "Mean", mean attenuation DCM 112181; UCUM mm3, mm, [hnsf'U], d;
ground glass DCM 112120; procedure LOINC 24627-2 "CT Chest". PS3.16 has no codes for the
volume doubling time, the solid / part-solid types or the Lung-RADS v2022 category, so those
use the private scheme 99RADSIGHT (a "99" designator, PS3.3 8.2) with the meaning spelt out.

AI provenance per nodule: the model and version as the group's Algorithm Identification, the
model's confidence (0..1) as a NUM DCM 111012 "Certainty of Finding" (the CAD concept of CID
6048) in UCUM "1", and the reader's verdict on the AI finding as a qualitative evaluation.
PS3.16 has no concept for a reader accepting or editing an AI finding, so that evaluation is
private: 99RADSIGHT "reader-decision" with the values accepted / edited / rejected. A measured
or reader-drawn finding carries neither.

AI results outside their models' validated domain (report.ai_cautions, from the input check of
viewer.inference.domain): TID 1500 has no concept for it, and TID 1411's qualitative evaluations
take coded values only, so the cautions go where TID 1500 puts free-text study-level judgements:
its "Qualitative Evaluations" container (UMLS C0034375, rows 10-12 of TID 1500), as TEXT items
named DCM 121106 "Comment". Any SR viewer shows them; nothing private is needed.

UIDs of a report version are name-based (UUID v5 in the 2.25 arc) from the report id and
version, so an amendment references its predecessor's SOP Instance UID without a lookup.
"""

from __future__ import annotations

import datetime as dt
import uuid
from io import BytesIO
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import Comprehensive3DSRStorage

from viewer import __version__
from viewer.core.errors import RadSightError
from viewer.report.dicom_signature import (
    add_signature,
    parse_dicom_datetime,
    verify_signatures,
)
from viewer.report.identity import Identity
from viewer.report.model import DECISIONS, Report, version_key

UID_NAMESPACE = uuid.UUID("6b1c1f3e-8f4a-5d52-9a57-2b0c7e5a0d11")
SR_SERIES_NUMBER = 990
PRIVATE = "99RADSIGHT"
CT_CHEST = hd.sr.CodedConcept("24627-2", "LN", "CT Chest")
NODULE = hd.sr.CodedConcept("27925004", "SCT", "Nodule")
MASS = hd.sr.CodedConcept("4147007", "SCT", "Mass")  # a lesion > 30 mm (record kind "mass")
LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
LATERALITY = hd.sr.CodedConcept("272741003", "SCT", "Laterality")
LEFT = hd.sr.CodedConcept("7771000", "SCT", "Left")
RIGHT = hd.sr.CodedConcept("24028007", "SCT", "Right")
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
LONG_AXIS = hd.sr.CodedConcept("103339001", "SCT", "Long Axis")
SHORT_AXIS = hd.sr.CodedConcept("103340004", "SCT", "Short Axis")
DIAMETER = hd.sr.CodedConcept("81827009", "SCT", "Diameter")
MEAN = hd.sr.CodedConcept("373098007", "SCT", "Mean")
MEAN_HU = hd.sr.CodedConcept("112181", "DCM", "Mean Attenuation Coefficient")
VDT = hd.sr.CodedConcept("volume-doubling-time", PRIVATE, "Volume doubling time")
NODULE_TYPE = hd.sr.CodedConcept("nodule-type", PRIVATE, "Nodule type")
TYPES = {"solid": hd.sr.CodedConcept("solid", PRIVATE, "Solid nodule"),
         "part-solid": hd.sr.CodedConcept("part-solid", PRIVATE, "Part-solid nodule"),
         "ground-glass": hd.sr.CodedConcept("112120", "DCM", "Ground glass opacity")}
LUNG_RADS = hd.sr.CodedConcept("lung-rads-v2022", PRIVATE, "Lung-RADS v2022 category")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
CERTAINTY = codes.DCM.CertaintyOfFinding
READER_DECISION = hd.sr.CodedConcept("reader-decision", PRIVATE, "Reader decision on AI finding")
DECISION_CODES = {d: hd.sr.CodedConcept(d, PRIVATE, f"AI finding {d} by reader") for d in DECISIONS}
UNITS = {"mm3": hd.sr.CodedConcept("mm3", "UCUM", "cubic millimeter"),
         "mm": hd.sr.CodedConcept("mm", "UCUM", "millimeter"),
         "HU": hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit"),
         "d": hd.sr.CodedConcept("d", "UCUM", "day"),
         "1": codes.UCUM.NoUnits}
# (record key, concept, unit, derivation)
MEASUREMENTS = (("volume_mm3", VOLUME, "mm3", None), ("long_axis_mm", LONG_AXIS, "mm", None),
                ("short_axis_mm", SHORT_AXIS, "mm", None), ("mean_diameter_mm", DIAMETER, "mm", MEAN),
                ("mean_hu", MEAN_HU, "HU", None))


class SRError(RadSightError):
    """An SR that cannot be written as asked; the message says what is missing."""


def name_uid(*parts: object) -> str:
    """A UID from names (UUID v5 in the 2.25 arc, PS3.5 B.2): the same names give the same UID."""
    return f"2.25.{uuid.uuid5(UID_NAMESPACE, '/'.join(str(p) for p in parts)).int}"


def sr_instance_uid(report_id: str, version: int) -> str:
    """The SOP Instance UID of one report version's SR."""
    return name_uid("sr", version_key(report_id, version))


def sr_series_uid(report_id: str) -> str:
    """All versions of a report share one SR series."""
    return name_uid("sr-series", report_id)


def _headers(source_dir: Path | str | None, series_uid: str | None) -> list[Dataset]:
    """Headers of the source CT images (pixels not read), of `series_uid` if given."""
    if source_dir is None:
        return []
    found = []
    for path in sorted(p for p in Path(source_dir).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
            continue
        if series_uid and ds.SeriesInstanceUID != series_uid:
            continue
        found.append(ds)
    return found


def _nearest_image(images: list[Dataset], point: np.ndarray) -> tuple[Dataset, np.ndarray] | None:
    """The image whose plane is nearest `point` and the point's pixel coordinates (column, row;
    the top-left pixel's centre is (0.5, 0.5), PS3.3 C.18.6.1.1)."""
    best = None
    for ds in images:
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        row_dir, col_dir = iop[:3], iop[3:]
        normal = np.cross(row_dir, col_dir)
        offset = point - np.array([float(v) for v in ds.ImagePositionPatient])
        distance = abs(float(offset @ normal))
        if best is None or distance < best[0]:
            spacing = [float(v) for v in ds.PixelSpacing]
            pixel = np.array([offset @ row_dir / spacing[1] + 0.5, offset @ col_dir / spacing[0] + 0.5])
            best = (distance, ds, pixel, spacing)
    if best is None:
        return None
    return best[1], best[2]


def _segment_number(seg: Dataset | None, tracking_uid: str | None) -> int | None:
    if seg is None or not tracking_uid:
        return None
    for segment in seg.get("SegmentSequence", ()):
        if str(segment.get("TrackingUID", "")) == tracking_uid:
            return int(segment.SegmentNumber)
    return None


def _algorithm(finding) -> hd.sr.AlgorithmIdentification | None:
    """The AI model behind a finding (its provenance, else the record's first model)."""
    prov = finding.provenance
    if prov.source == "ai" and prov.model_id:
        return hd.sr.AlgorithmIdentification(name=prov.model_id[:64], version=str(prov.model_version)[:64])
    models = (finding.record.get("provenance") or {}).get("models") or []
    if finding.record.get("source") == "ai" and models:
        return hd.sr.AlgorithmIdentification(name=str(models[0]["id"])[:64], version=str(models[0]["version"])[:64])
    return None


def _nodule_group(finding, images: list[Dataset], seg: Dataset | None) -> tuple[object, list[Dataset]]:
    record = finding.record
    nodule_id = str(record.get("id") or "N?")
    tracking_uid = record.get("tracking_uid") or finding.provenance.tracking_uid or name_uid("nodule", nodule_id)
    centre = np.array(record["centre_lps_mm"], dtype=float)
    site = hd.sr.FindingSite(LUNG, laterality=LEFT if centre[0] > 0 else RIGHT if centre[0] < 0 else None)
    algorithm = _algorithm(finding)
    measurements = []
    for key, concept, unit, derivation in MEASUREMENTS:
        if record.get(key) is not None:
            measurements.append(hd.sr.Measurement(name=concept, value=float(record[key]), unit=UNITS[unit],
                                                  derivation=derivation, algorithm_id=algorithm))
    prior = record.get("prior") or {}
    if prior.get("vdt_days") is not None:
        measurements.append(hd.sr.Measurement(name=VDT, value=float(prior["vdt_days"]), unit=UNITS["d"],
                                              algorithm_id=algorithm))
    prov = finding.provenance
    if prov.source == "ai" and prov.confidence is not None:
        if not 0.0 <= float(prov.confidence) <= 1.0:
            raise SRError(f"finding {nodule_id}: AI confidence {prov.confidence} is outside 0..1; "
                          "the model's score was stored on another scale")
        measurements.append(hd.sr.Measurement(name=CERTAINTY, value=float(prov.confidence), unit=UNITS["1"],
                                              algorithm_id=algorithm))
    evaluations = []
    if prov.source == "ai" and prov.decision is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(READER_DECISION, DECISION_CODES[prov.decision]))
    if record.get("type") in TYPES:
        evaluations.append(hd.sr.QualitativeEvaluation(NODULE_TYPE, TYPES[record["type"]]))
    category = (record.get("lung_rads") or {}).get("category")
    if category:
        evaluations.append(hd.sr.QualitativeEvaluation(
            LUNG_RADS, hd.sr.CodedConcept(f"lung-rads-{category}", PRIVATE, f"Lung-RADS {category}")))
    evidence = []
    number = _segment_number(seg, tracking_uid)
    region = None
    segment = None
    if number is not None:
        segment = hd.sr.ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                          segment_number=number,
                                          source_series=hd.sr.SourceSeriesForSegmentation(
                                              seg.ReferencedSeriesSequence[0].SeriesInstanceUID))
    nearest = _nearest_image(images, centre)
    if nearest is None:
        raise SRError(f"finding {nodule_id}: no source image to reference; pass the study folder "
                      "(source_dir) the report is about")
    image, pixel = nearest
    evidence.append(image)
    if segment is None:
        radius_px = max(float(record.get("long_axis_mm") or 2.0) / 2 / float(image.PixelSpacing[1]), 0.5)
        region = [hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
            graphic_data=np.array([pixel, pixel + [radius_px, 0.0]]),
            source_image=hd.sr.SourceImageForRegion(image.SOPClassUID, image.SOPInstanceUID))]
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=nodule_id),
        referenced_regions=region, referenced_segment=segment,
        finding_type=MASS if record.get("kind") == "mass" else NODULE,
        algorithm_id=algorithm, finding_sites=[site], measurements=measurements,
        qualitative_evaluations=evaluations or None)
    return group, evidence


def person_name(common_name: str) -> str:
    """A certificate common name as a DICOM PN (PS3.5 6.2.1.2): the last word is taken as the
    family name ("Jane Q Reader" -> "Reader^Jane Q"); a name already in PN form is kept."""
    if "^" in common_name:
        return common_name[:64]
    words = common_name.split()
    return (f"{words[-1]}^{' '.join(words[:-1])}" if len(words) > 1 else f"{common_name}^")[:64]


def _text(name: hd.sr.CodedConcept, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value[:10240], relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def build_sr(report: Report, identity: Identity | None = None, source_dir: Path | str | None = None) -> Dataset:
    """The SR dataset of `report` (unsigned). Source image headers come from `source_dir` (else
    the report's source_paths); SEGs from report.seg_paths."""
    dirs = [source_dir] if source_dir is not None else list(report.source_paths)
    images = [ds for d in dirs for ds in _headers(d, report.series_uid)]
    if not images:
        raise SRError(f"report {report.key}: no source CT images found in {dirs or 'nothing (no source_dir)'}; "
                      "the SR must reference the images it reports on")
    seg = next((pydicom.dcmread(p, stop_before_pixels=True) for p in report.seg_paths if Path(p).is_file()), None)

    groups, evidence = [], []
    for finding in report.findings:
        if finding.include:
            group, used = _nodule_group(finding, images, seg)
            groups.append(group)
            evidence.extend(used)
    if not evidence:
        evidence.append(images[0])
    if seg is not None:
        evidence.append(seg)

    person = person_name(report.signer or (identity.common_name if identity else "Unsigned draft"))
    device = hd.sr.DeviceObserverIdentifyingAttributes(uid=name_uid("device", "RadSight"), name="RadSight",
                                                       manufacturer_name="RadSight", model_name="RadSight")
    context = hd.sr.ObservationContext(
        observer_person_context=hd.sr.ObserverContext(
            codes.DCM.Person, hd.sr.PersonObserverIdentifyingAttributes(
                name=person[:64], organization_name=(identity.organization if identity else None))),
        observer_device_context=hd.sr.ObserverContext(codes.DCM.Device, device))
    measurement_report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=CT_CHEST,
                                                 imaging_measurements=groups or None)
    root = measurement_report[0]
    texts = [f"{name}: {v.value}{' ' + v.unit if v.unit else ''}" for name, v in report.values.items()
             if v.value not in (None, "")]
    items = []
    if report.ai_cautions:
        cautions = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS,
                                              relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
        cautions.ContentSequence = hd.sr.ContentSequence([_text(codes.DCM.Comment, c) for c in report.ai_cautions])
        items.append(cautions)
    impression = report.values.get("impression")
    if impression is not None and impression.value:
        items.append(_text(codes.DCM.Impression, str(impression.value)))
    if report.free_text:
        items.append(_text(codes.DCM.Comment, report.free_text))
    if texts:
        items.append(_text(codes.DCM.Comment, "\n".join(texts)))
    if report.amendment_reason:
        items.append(_text(codes.DCM.Comment, f"Amendment of {report.predecessor_id}: {report.amendment_reason}"))
    for item in items:
        root.ContentSequence.append(item)

    signed = report.status == "signed"
    previous = []
    if report.predecessor_id:
        prior_id, _, prior_version = report.predecessor_id.rpartition("/v")
        stub = Dataset()
        stub.StudyInstanceUID = evidence[0].StudyInstanceUID
        stub.SeriesInstanceUID = sr_series_uid(prior_id or report.id)
        stub.SOPClassUID = Comprehensive3DSRStorage
        stub.SOPInstanceUID = sr_instance_uid(prior_id or report.id, int(prior_version or report.version - 1))
        for attr in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex"):
            if attr in evidence[0]:
                setattr(stub, attr, evidence[0].get(attr))
        previous.append(stub)
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=measurement_report, series_instance_uid=sr_series_uid(report.id),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=sr_instance_uid(report.id, report.version),
        instance_number=report.version, manufacturer="RadSight", is_complete=signed, is_final=signed,
        is_verified=signed, verifying_observer_name=person[:64] if signed else None,
        verifying_organization=((identity.organization if identity else None) or "RadSight") if signed else None,
        previous_versions=previous or None, series_description=f"Report {report.template_id}"[:64],
        software_versions=__version__, manufacturer_model_name="RadSight")
    if signed and report.signed_at:
        when = dt.datetime.fromisoformat(report.signed_at)
        sr.VerifyingObserverSequence[0].VerificationDateTime = when.strftime("%Y%m%d%H%M%S%z")
        sr.ContentDate, sr.ContentTime = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    return sr


def write_sr(report: Report, out_path: Path | str, identity: Identity | None = None,
             source_dir: Path | str | None = None) -> Path:
    """Write the report as an SR; a signed report is signed with `identity` (required, and its
    certificate must name the report's signer) and checked after writing."""
    signed = report.status == "signed"
    if signed and identity is None:
        raise SRError(f"report {report.key} is signed by {report.signer}: its SR needs the signer's identity "
                      "to carry the digital signature")
    if signed and identity.common_name != report.signer:
        raise SRError(f"report {report.key} was signed by {report.signer!r} but the identity given is "
                      f"{identity.common_name!r}")
    sr = build_sr(report, identity, source_dir)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if signed:
        # Sign what will be on disk: the dataset as read back from its own encoding.
        buffer = BytesIO()
        sr.save_as(buffer, enforce_file_format=True)
        sr = pydicom.dcmread(BytesIO(buffer.getvalue()))
        at = dt.datetime.fromisoformat(report.signed_at) if report.signed_at else None
        add_signature(sr, identity, at=at)
    tmp = out_path.with_name(out_path.name + ".part")
    sr.save_as(tmp, enforce_file_format=True)
    tmp.replace(out_path)
    if signed:
        result = verify_sr(out_path)
        if not result["valid"]:
            raise SRError(f"{out_path}: the SR just written does not verify: {'; '.join(result['problems'])}")
    return out_path


def verify_sr(path: Path | str) -> dict:
    """{"valid", "signer", "signed_at", "problems"}: valid only with at least one signature and
    every signature intact (MAC and signature, certificate valid when signed and now)."""
    path = Path(path)
    out = {"valid": False, "signer": None, "signed_at": None, "problems": []}
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError) as exc:
        out["problems"].append(f"{path}: not a readable DICOM file ({exc})")
        return out
    try:
        checks = verify_signatures(ds)
    except (ValueError, KeyError, AttributeError, TypeError) as exc:
        out["problems"].append(f"{path}: the signature elements cannot be read ({exc}); the file is damaged")
        return out
    if not checks:
        out["problems"].append(f"{path}: no signature (no Digital Signatures Sequence (FFFA,FFFA))")
        return out
    first = checks[0]
    when = parse_dicom_datetime(first.signed_at or "")
    out["signer"] = first.signer
    out["signed_at"] = when.astimezone(dt.UTC).isoformat() if when else first.signed_at
    out["problems"] = [p for c in checks for p in c.problems]
    if str(ds.get("VerificationFlag", "")) != "VERIFIED":
        out["problems"].append(f"{path}: signed but the SR's Verification Flag is {ds.get('VerificationFlag')!r}")
    out["valid"] = not out["problems"]
    return out
