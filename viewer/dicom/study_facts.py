"""The facts about a study that decide whether it may be compared with another one: when it was
made, what body region it shows, and whose it is.

Whose it is stays private: Patient ID (0010,0020) and Patient's Birth Date (0010,0030) are kept
only as hashes salted with a key made fresh in every process, so two studies can be compared
while the values themselves are never stored, logged, printed or written (not even in the
hashes' repr or in `to_json`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pydicom.multival
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from viewer.core.errors import DicomReadError

_SALT = secrets.token_bytes(16)
MAX_FILES_TRIED = 50
_TAGS = ["StudyInstanceUID", "StudyDate", "StudyTime", "BodyPartExamined", "Modality",
         "PatientID", "PatientBirthDate"]


def _private(value) -> str | None:
    text = " ".join(str(value or "").split())
    if not text:
        return None
    return hashlib.sha256(_SALT + text.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class StudyFacts:
    """(0008,0020) Study Date, (0008,0030) Study Time, (0018,0015) Body Part Examined and the
    salted patient keys of one study; `problems` says which values were unreadable."""

    study_uid: str | None
    study_date: dt.date | None
    study_time: dt.time | None = None
    body_part: str | None = None
    modality: str | None = None
    source: str = ""
    problems: tuple[str, ...] = ()
    patient_key: str | None = field(default=None, repr=False)
    birth_date_key: str | None = field(default=None, repr=False)

    @staticmethod
    def from_dataset(ds: Dataset, source: Path | str = "") -> "StudyFacts":
        """Facts from one header; unreadable dates become None with a problem saying so."""
        problems = []
        date = _date(ds.get("StudyDate"))
        if date is None and str(ds.get("StudyDate") or "").strip():
            problems.append(f"Study Date (0008,0020) {str(ds.StudyDate)!r} is not a YYYYMMDD date")
        time = _time(ds.get("StudyTime"))
        if time is None and str(ds.get("StudyTime") or "").strip():
            problems.append(f"Study Time (0008,0030) {str(ds.StudyTime)!r} is not an HHMMSS time")
        body = " ".join(str(ds.get("BodyPartExamined") or "").split()).upper() or None
        return StudyFacts(study_uid=str(ds.get("StudyInstanceUID") or "") or None, study_date=date,
                          study_time=time, body_part=body, modality=str(ds.get("Modality") or "") or None,
                          source=str(source), problems=tuple(problems),
                          patient_key=_private(ds.get("PatientID")),
                          birth_date_key=_private(ds.get("PatientBirthDate")))

    def patient_differences(self, other: "StudyFacts") -> list[str]:
        """Names of the patient attributes both studies state and that differ."""
        pairs = (("Patient ID (0010,0020)", self.patient_key, other.patient_key),
                 ("Patient's Birth Date (0010,0030)", self.birth_date_key, other.birth_date_key))
        return [name for name, a, b in pairs if a is not None and b is not None and a != b]

    def patient_unknown(self, other: "StudyFacts") -> list[str]:
        """Names of the patient attributes that one of the two studies lacks."""
        pairs = (("Patient ID (0010,0020)", self.patient_key, other.patient_key),
                 ("Patient's Birth Date (0010,0030)", self.birth_date_key, other.birth_date_key))
        return [name for name, a, b in pairs if a is None or b is None]

    def to_json(self) -> dict:
        """Everything but the patient keys."""
        return {"study_uid": self.study_uid,
                "study_date": self.study_date.isoformat() if self.study_date else None,
                "study_time": self.study_time.isoformat() if self.study_time else None,
                "body_part": self.body_part, "modality": self.modality, "source": self.source,
                "problems": list(self.problems)}


def read_study_facts(path: Path | str, study_uid: str | None = None) -> StudyFacts:
    """Facts of the study in `path` (a DICOM file or a folder; with `study_uid`, that study's
    first file), read from one header."""
    ds, candidate = _first_header(path, "StudyInstanceUID", study_uid, _TAGS, "study")
    return StudyFacts.from_dataset(ds, candidate)


@dataclass(frozen=True)
class AcquisitionFacts:
    """How a series was acquired, as the model input check compares it with a model card:
    (0008,0070) Manufacturer, (0008,1090) Manufacturer's Model Name, (0018,1210) Convolution
    Kernel (values joined with a backslash), (0018,0050) Slice Thickness in mm. None: not stated."""

    manufacturer: str | None = None
    model_name: str | None = None
    kernel: str | None = None
    slice_thickness_mm: float | None = None
    source: str = ""

    @staticmethod
    def from_dataset(ds: Dataset, source: Path | str = "") -> "AcquisitionFacts":
        def text(keyword: str) -> str | None:
            value = ds.get(keyword)
            items = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
            joined = "\\".join(" ".join(str(v or "").split()) for v in items).strip("\\")
            return joined or None

        try:
            thickness = float(ds.get("SliceThickness"))
        except (TypeError, ValueError):
            thickness = None
        return AcquisitionFacts(text("Manufacturer"), text("ManufacturerModelName"), text("ConvolutionKernel"),
                                thickness if thickness and thickness > 0 else None, str(source))

    def to_json(self) -> dict:
        return {"manufacturer": self.manufacturer, "model_name": self.model_name, "kernel": self.kernel,
                "slice_thickness_mm": self.slice_thickness_mm}


def read_acquisition_facts(path: Path | str, series_uid: str | None = None) -> AcquisitionFacts:
    """Acquisition facts of the series in `path` (with `series_uid`, that series' first file)."""
    tags = ["SeriesInstanceUID", "Manufacturer", "ManufacturerModelName", "ConvolutionKernel", "SliceThickness"]
    ds, candidate = _first_header(path, "SeriesInstanceUID", series_uid, tags, "series")
    return AcquisitionFacts.from_dataset(ds, candidate)


def _first_header(path: Path | str, uid_keyword: str, uid: str | None, tags: list[str],
                  what: str) -> tuple[Dataset, Path]:
    """The first readable header in `path` whose `uid_keyword` is `uid` (any, if None)."""
    path = Path(path)
    candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not candidates:
        raise DicomReadError(path, f"no files to read the {what}'s header from")
    tried = 0
    for candidate in candidates:
        if tried >= MAX_FILES_TRIED:
            break
        tried += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(candidate, stop_before_pixels=True, specific_tags=tags)
        except (InvalidDicomError, OSError, ValueError, TypeError, KeyError, EOFError):
            continue
        found = str(ds.get(uid_keyword) or "")
        if not found or (uid is not None and found != uid):
            continue
        return ds, candidate
    wanted = f"{what} {uid}" if uid else f"a {what}"
    raise DicomReadError(path, f"none of the {tried} files tried is a DICOM file of {wanted} "
                               f"(of {len(candidates)} files); point at the {what}'s DICOM folder")


def _date(value) -> dt.date | None:
    text = str(value or "").strip()
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date() if len(text) == 8 else None
    except ValueError:
        return None


def _time(value) -> dt.time | None:
    # DICOM TM: HH, HHMM, HHMMSS or HHMMSS.FFFFFF; older files may use colons.
    text = str(value or "").strip().replace(":", "").split(".")[0]
    if len(text) not in (2, 4, 6) or not text.isdigit():
        return None
    parts = [int(text[i:i + 2]) for i in range(0, len(text), 2)] + [0, 0]
    try:
        return dt.time(parts[0], parts[1], parts[2])
    except ValueError:
        return None
