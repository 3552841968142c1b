"""De-identified copies of DICOM studies for teaching: PS3.15 Annex E Basic Application Level
Confidentiality Profile with the Retain Longitudinal Temporal Information with Modified Dates
Option (DCM 113100, 113107).

dicognito does the value replacement while it walks every element, sequences and file meta
included: person names, IDs, addresses, institution, UIDs and dates. RadSight keys it and adds
what it lacks for this use:
- one keyed seed for every run, so UIDs map the same way across files, studies and runs and
  references (SEG/SR to images, Frame of Reference, Study/Series) stay resolvable; UIDs become
  UUID-derived 2.25 UIDs (PS3.5 B.2) instead of dicognito's unregistered 2.<digits> root, and the
  standard's own well-known UIDs (1.2.840.10008...) are kept;
- a per-patient shift of whole days (dicognito shifts all patients by one offset in hours, which
  moves a late-evening study across midnight and breaks day intervals), secret and never printed;
- a pseudonym Patient ID / Patient's Name per original patient (HMAC of the ID), the same in all
  of that patient's studies;
- private attributes removed and the rest of Table E.1-1 applied (viewer.dicom.deid_profile);
- the method codes, Patient Identity Removed and Longitudinal Temporal Information Modified;
- a warning where pixels may carry burned-in text.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pydicom
from dicognito.anonymizer import Anonymizer
from dicognito.datetimeanonymizer import DateTimeAnonymizer
from dicognito.element_anonymizer import ElementAnonymizer
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ImplicitVRLittleEndian

from viewer.core.errors import FileProblem, RadSightError
from viewer.dicom.deid_key import DeidKey
from viewer.dicom.deid_profile import STANDARD_EDITION, apply_basic_profile, stamp_method

Progress = Callable[[int, int, str], None]

METHOD_DESCRIPTION = "PS3.15 E Basic Profile, Modified Dates (RadSight, dicognito)"
MIN_DAY_SHIFT, DAY_SHIFT_RANGE = 3650, 3650  # 10 to 20 years back
WELL_KNOWN_UID_ROOT = "1.2.840.10008."
_KEPT_UID_KEYWORDS = {"CodingSchemeUID", "MappingResourceUID", "TransferSyntaxUID"}
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"

# Secondary capture (.7.x), ultrasound (.6.x, .3.1), visible light, video and encapsulated
# documents are where text in the pixels is common (PS3.15 E.1.1 note on burned-in data).
_AT_RISK_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture image",
    "1.2.840.10008.5.1.4.1.1.6": "ultrasound image",
    "1.2.840.10008.5.1.4.1.1.3.1": "ultrasound multi-frame image",
    "1.2.840.10008.5.1.4.1.1.77.1": "visible light image",
    "1.2.840.10008.5.1.4.1.1.104": "encapsulated document",
}
_AT_RISK_MODALITIES = {"US": "ultrasound image", "SC": "secondary capture image", "OT": "image of modality OT",
                       "XC": "external camera photograph", "ES": "endoscopy image", "DOC": "document",
                       "GM": "general microscopy image", "OP": "ophthalmic photograph", "IVUS": "ultrasound image"}


def burned_in_risk(ds: Dataset) -> str | None:
    """Why this instance's pixels may show identifying text, or None.

    Burned In Annotation (0028,0301) YES always counts; for the kinds above a missing or unknown
    value counts too, since those are the images that most often carry it."""
    stated = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if stated == "YES":
        return "Burned In Annotation (0028,0301) is YES: the pixels show text that may identify the patient"
    sop_class = str(ds.get("SOPClassUID", ""))
    kind = next((name for prefix, name in _AT_RISK_CLASSES.items()
                 if sop_class == prefix or sop_class.startswith(prefix + ".")), None)
    kind = kind or _AT_RISK_MODALITIES.get(str(ds.get("Modality", "")).upper())
    if kind and stated != "NO":
        said = f"is {stated!r}" if stated else "is missing"
        return f"{kind} and Burned In Annotation (0028,0301) {said}: the pixels may show identifying text"
    if str(ds.get("RecognizableVisualFeatures", "") or "").upper() == "YES":
        return "Recognizable Visual Features (0028,0302) is YES: the pixels may show the patient's face"
    return None


@dataclass(frozen=True)
class Pseudonym:
    """A patient as the de-identified copies name them; the day shift stays out of repr."""

    patient_id: str
    patient_name: str
    day_shift: int = field(repr=False)  # negative: days added to every date of this patient


class _KeyedUIDs(ElementAnonymizer):
    """Every instance UID -> 2.25.<UUID from the HMAC of the original>; same key, same UID."""

    def __init__(self, key: DeidKey):
        self._key = key
        self._cache: dict[str, str] = {}

    def new_uid(self, uid: str) -> str:
        uid = uid.strip().rstrip("\0")
        if not uid or uid.startswith(WELL_KNOWN_UID_ROOT):
            return uid
        if uid not in self._cache:
            digest = self._key.digest("uid", uid)[:16]
            self._cache[uid] = f"2.25.{uuid.UUID(bytes=digest, version=5).int}"
        return self._cache[uid]

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        if data_element.VR != "UI":
            return False
        keyword = data_element.keyword or ""
        if not data_element.value or keyword.endswith("ClassUID") or keyword in _KEPT_UID_KEYWORDS:
            return True
        if isinstance(data_element.value, pydicom.multival.MultiValue):
            data_element.value = [self.new_uid(v) for v in data_element.value]
        else:
            data_element.value = self.new_uid(data_element.value)
        return True

    def describe_actions(self):
        yield "Replace instance UIDs with keyed 2.25 UIDs; keep class, transfer syntax and 1.2.840.10008 UIDs"


class _PatientPseudonym(ElementAnonymizer):
    """Patient ID and Patient's Name (anywhere) -> the patient's pseudonym."""

    def __init__(self, pseudonym: Pseudonym, id_of: Callable[[str], str]):
        self._pseudonym, self._id_of = pseudonym, id_of

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        if data_element.keyword == "PatientName":
            data_element.value = self._pseudonym.patient_name
            return True
        if data_element.keyword == "PatientID":
            data_element.value = self._id_of(str(data_element.value or ""))
            return True
        return False

    def describe_actions(self):
        yield "Replace PatientID and PatientName with the patient's keyed pseudonym"


class _WholeDayShift(DateTimeAnonymizer):
    """dicognito's DA/DT shift (times shift with their dates) by whole days; a value that is not
    a date (malformed, a range) is emptied rather than left in place."""

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        try:
            return super().__call__(dataset, data_element)
        except ValueError:
            data_element.value = ""
            time = data_element.keyword.replace("Date", "Time") if data_element.keyword else ""
            if data_element.VR == "DA" and time in dataset:
                dataset.data_element(time).value = ""
            return True


def patient_key(ds: Dataset) -> str:
    """Who the patient is in the source: issuer + Patient ID, else name + birth date, else the study."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return f"id\0{ds.get('IssuerOfPatientID', '') or ''}\0{pid}"
    name = str(ds.get("PatientName", "") or "").strip()
    if name:
        return f"name\0{name}\0{ds.get('PatientBirthDate', '') or ''}"
    return f"study\0{ds.get('StudyInstanceUID', '')}"


class Deidentifier:
    """De-identifies datasets in place, consistently for one key across calls, files and runs."""

    def __init__(self, key: DeidKey):
        self._key = key
        self._uids = _KeyedUIDs(key)
        self._seed = key.digest("dicognito-seed", "").hex()
        self._anonymizers: dict[str, tuple[Pseudonym, Anonymizer]] = {}

    def _token(self, purpose: str, value: str, length: int) -> str:
        return base64.b32encode(self._key.digest(purpose, value)).decode()[:length]

    def _pseudo_id(self, original_id: str) -> str:
        return "RS" + self._token("patient-id", original_id.strip(), 10) if original_id.strip() else ""

    def _text_token(self, text: str) -> str:
        return "TEXT " + self._token("text", text.strip(), 8)

    def pseudonym(self, ds: Dataset) -> Pseudonym:
        return self._for_patient(ds)[0]

    def new_uid(self, uid: str) -> str:
        """The UID that replaces an original one (so callers can follow references)."""
        return self._uids.new_uid(uid)

    def _for_patient(self, ds: Dataset) -> tuple[Pseudonym, Anonymizer]:
        key = patient_key(ds)
        if key not in self._anonymizers:
            pid = str(ds.get("PatientID", "") or "")
            pseudo_id = self._pseudo_id(pid) if pid.strip() else "RS" + self._token("patient-id", key, 10)
            shift = -(MIN_DAY_SHIFT + int.from_bytes(self._key.digest("day-shift", key)[:8]) % DAY_SHIFT_RANGE)
            pseudonym = Pseudonym(pseudo_id, f"ANONYMOUS^{pseudo_id}", shift)
            anonymizer = Anonymizer(seed=self._seed)
            # Handlers added later run first: ours take these elements before dicognito's own.
            anonymizer.add_element_handler(_WholeDayShift(24 * shift))
            anonymizer.add_element_handler(self._uids)
            anonymizer.add_element_handler(_PatientPseudonym(pseudonym, self._pseudo_id))
            self._anonymizers[key] = (pseudonym, anonymizer)
        return self._anonymizers[key]

    def deidentify(self, ds: Dataset) -> tuple[Pseudonym, str | None]:
        """De-identify in place; returns the patient's pseudonym and the burned-in risk, if any."""
        risk = burned_in_risk(ds)
        pseudonym, anonymizer = self._for_patient(ds)
        if not hasattr(ds, "file_meta"):
            ds.file_meta = FileMetaDataset()
        transfer_syntax = ds.file_meta.get("TransferSyntaxUID") or ImplicitVRLittleEndian
        ds.remove_private_tags()  # PS3.15 E: private attributes X (no Retain Safe Private Option)
        anonymizer.anonymize(ds)
        apply_basic_profile(ds, self._text_token)
        stamp_method(ds, identity_removed=risk is None, description=METHOD_DESCRIPTION)
        # A new file meta: Source/Sending AE titles and private meta would name the sender.
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = transfer_syntax
        ds.file_meta = meta
        return pseudonym, risk


@dataclass
class FileWarning:
    file: Path
    message: str

    def to_json(self) -> dict:
        return {"file": str(self.file), "message": self.message}


@dataclass
class _Written:
    pseudonym: Pseudonym
    study_uid: str
    study_date: str
    study_time: str
    series_uid: str
    series_number: int
    modality: str
    instance_number: int
    sop_uid: str
    temp: Path
    source: Path
    warning: str | None


@dataclass
class StudySummary:
    """One de-identified study: where it went and what it holds; its shift is not part of it."""

    patient_id: str
    patient_name: str
    folder: str
    study_date: str
    days_from_first_study: int | None
    files: int
    series: int
    modalities: list[str]
    warnings: list[dict]

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class DeidRun:
    out: Path
    studies: list[StudySummary]
    written: list[Path]
    warnings: list[FileWarning]
    unreadable: list[FileProblem]  # DICOM files that could not be read or de-identified
    not_dicom: list[FileProblem]  # other files under the paths (labels, JSON): not copied
    copies: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output) per file written

    def to_json(self) -> dict:
        return {"out": str(self.out), "profile": {"method": METHOD_DESCRIPTION, "table_edition": STANDARD_EDITION,
                                                  "codes": ["DCM 113100", "DCM 113107"]},
                "files_written": len(self.written), "studies": [s.to_json() for s in self.studies],
                "warnings": [w.to_json() for w in self.warnings],
                "unreadable": [p.to_json() for p in self.unreadable],
                "not_dicom": [p.to_json() for p in self.not_dicom]}


def _walk(paths: Iterable[Path]) -> Iterable[Path]:
    for path in paths:
        if path.is_file():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            yield from (Path(root) / name for name in sorted(files) if not name.startswith("."))


class NotDicomError(RadSightError):
    """The file is something else (a label volume, JSON): skipped, not an error."""


def read_instance(path: Path) -> Dataset:
    """A composite instance from a file, or a RadSightError that says what is wrong with it."""
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise NotDicomError("not a DICOM file (no DICM prefix and no DICOM data set at the start)") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on damaged files
        raise RadSightError(f"damaged DICOM file: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
    if str(ds.file_meta.get("MediaStorageSOPClassUID", "")) == DICOMDIR_CLASS:
        raise RadSightError("DICOMDIR not copied: the de-identified files get new names and no directory")
    missing = [name for name in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
               if not ds.get(name)]
    if missing:
        raise RadSightError(f"not a composite DICOM instance: {', '.join(missing)} missing")
    _check_native_pixel_length(ds)
    return ds


def _check_native_pixel_length(ds: Dataset) -> None:
    """pydicom reads a file cut short without complaint; a copy of it would look whole."""
    ts = ds.file_meta.get("TransferSyntaxUID")
    if "PixelData" not in ds or (ts is not None and pydicom.uid.UID(ts).is_compressed):
        return
    try:
        expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
                    * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated)) // 8
    except (AttributeError, TypeError, ValueError):
        return  # the image module itself is incomplete; validators will say so
    got = len(ds.PixelData)
    if got < expected:
        raise RadSightError(f"damaged DICOM file: Pixel Data has {got} bytes where {ds.Rows} x {ds.Columns} "
                            f"pixels of {ds.BitsAllocated} bits need {expected}: the file is cut short")


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def deidentify_paths(paths: Iterable[Path | str], out: Path | str, key: DeidKey | None = None,
                     progress: Progress | None = None) -> DeidRun:
    """De-identify every DICOM file under `paths` into `out` as PATIENT/study-NN/series-NNN/NNNNN.dcm.

    `out` must be new or empty (mixing runs would mix keys). Unreadable files are listed with the
    reason and the rest are still written; burned-in risks are warnings."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise RadSightError(f"{p}: no such file or folder")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RadSightError(f"{out}: exists and is not an empty folder; give a new folder for the copies")
    key = key or DeidKey.default()
    deid = Deidentifier(key)
    files = list(_walk(paths))
    staging = out / ".incoming"
    staging.mkdir(parents=True, exist_ok=True)
    written: list[_Written] = []
    unreadable: list[FileProblem] = []
    not_dicom: list[FileProblem] = []
    for i, path in enumerate(files):
        try:
            ds = read_instance(path)
        except NotDicomError as exc:
            not_dicom.append(FileProblem(path, str(exc)))
        except RadSightError as exc:
            unreadable.append(FileProblem(path, str(exc)))
        else:
            try:
                pseudonym, risk = deid.deidentify(ds)
                temp = staging / f"{len(written):08d}.dcm"
                ds.save_as(temp, enforce_file_format=True)
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                unreadable.append(FileProblem(path, f"could not be de-identified: {type(exc).__name__}: "
                                                    f"{' '.join(str(exc).split())}"))
            else:
                written.append(_Written(pseudonym, str(ds.StudyInstanceUID), str(ds.get("StudyDate", "") or ""),
                                        str(ds.get("StudyTime", "") or ""), str(ds.SeriesInstanceUID),
                                        _int(ds.get("SeriesNumber"), 0), str(ds.get("Modality", "") or ""),
                                        _int(ds.get("InstanceNumber"), 0), str(ds.SOPInstanceUID), temp, path, risk))
        if progress:
            progress(i + 1, len(files), "De-identifying")
    run = _arrange(out, written, unreadable, not_dicom)
    shutil.rmtree(staging, ignore_errors=True)
    return run


def _arrange(out: Path, written: list[_Written], unreadable: list[FileProblem],
             not_dicom: list[FileProblem]) -> DeidRun:
    """Move the staged files into neutral, deterministic names and summarise each study."""
    by_patient: dict[str, dict[str, list[_Written]]] = {}
    for w in written:
        by_patient.setdefault(w.pseudonym.patient_id, {}).setdefault(w.study_uid, []).append(w)
    studies: list[StudySummary] = []
    final: list[Path] = []
    copies: list[tuple[Path, Path]] = []
    warnings: list[FileWarning] = []
    for patient_id in sorted(by_patient):
        studies_of = by_patient[patient_id]
        ordered = sorted(studies_of, key=lambda uid: (min(x.study_date for x in studies_of[uid]),
                                                      min(x.study_time for x in studies_of[uid]), uid))
        first = None
        for n, study_uid in enumerate(ordered, start=1):
            items = studies_of[study_uid]
            folder = out / patient_id / f"study-{n:02d}"
            series_uids = sorted({x.series_uid for x in items},
                                 key=lambda s: (min(x.series_number for x in items if x.series_uid == s), s))
            study_warnings: dict[str, int] = {}
            for s_index, series_uid in enumerate(series_uids, start=1):
                members = sorted((x for x in items if x.series_uid == series_uid),
                                 key=lambda x: (x.instance_number, x.sop_uid))
                modality = re.sub(r"[^A-Z0-9]", "", members[0].modality.upper()) or "OT"
                series_dir = folder / f"series-{s_index:03d}-{modality}"
                series_dir.mkdir(parents=True, exist_ok=True)
                for k, w in enumerate(members, start=1):
                    target = series_dir / f"{k:05d}.dcm"
                    os.replace(w.temp, target)
                    final.append(target)
                    copies.append((w.source, target))
                    if w.warning:
                        warnings.append(FileWarning(w.source, w.warning))
                        study_warnings[w.warning] = study_warnings.get(w.warning, 0) + 1
            study_date = min(x.study_date for x in items)
            try:
                day = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:8]))
            except ValueError:
                day = None
            if first is None and day is not None:
                first = day
            studies.append(StudySummary(
                patient_id=patient_id, patient_name=items[0].pseudonym.patient_name,
                folder=str(folder.relative_to(out)), study_date=study_date,
                days_from_first_study=(day - first).days if day and first else None,
                files=len(items), series=len(series_uids),
                modalities=sorted({x.modality for x in items if x.modality}),
                warnings=[{"message": m, "files": c} for m, c in sorted(study_warnings.items())]))
    return DeidRun(out, studies, final, warnings, unreadable, not_dicom, copies)

