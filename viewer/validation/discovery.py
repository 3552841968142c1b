"""Cases and reference files under a data folder.

Every CT image series is one case (viewer.dicom's scan, as `radsight info` shows it); NIfTI /
NRRD images are cases only in a top-level folder of the data set that holds no DICOM series.
Reference files are every readable annotation anywhere under the folder: DICOM SEG, RTSTRUCT and
SR objects the scan found, label maps (integer NIfTI / NRRD), LIDC and PASCAL VOC XML, and LUNA16
tables (.csv, or quoted in a .txt). Each is attached to the series it names (SOP Instance UID,
Series Instance UID, Frame of Reference; label maps by geometry within their own top-level
folder). A file that cannot be read or matched becomes a warning naming it; nothing here stops
the run.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from viewer.dicom import Series, open_path
from viewer.dicom.scan import Progress
from viewer.validation.formats import ReferenceFile
from viewer.validation.formats.labelmap import LabelMap, is_label_map
from viewer.validation.formats.lidc_xml import LidcXml
from viewer.validation.formats.luna_csv import LunaCsv
from viewer.validation.formats.rtstruct import RTSTRUCT_CLASS, RtStruct
from viewer.validation.formats.seg import SEG_CLASSES, SegReference
from viewer.validation.formats.sr import SrReference
from viewer.validation.formats.voc_boxes import VocBoxes, VocSlice
from viewer.validation.lesion import ReferenceError

SR_CLASS_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
TEXT_SUFFIXES = (".csv", ".txt")
MAX_TEXT_BYTES = 20_000_000


@dataclass(frozen=True)
class Case:
    """One image series to validate on: a DICOM series, or a NIfTI / NRRD image file."""

    name: str
    folder_key: str
    series: Series | None = None
    image_file: Path | None = None


@dataclass
class Discovery:
    cases: list[Case] = field(default_factory=list)
    references: list[ReferenceFile] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_series: list[str] = field(default_factory=list)


def folder_key(root: Path, path: Path) -> str:
    """The top-level folder of the data set that `path` lies in ('.' for files directly in it)."""
    try:
        parts = Path(path).resolve().relative_to(root.resolve()).parts
    except ValueError:
        return "."
    return parts[0] if len(parts) > 1 else "."


def discover(root: Path | str, progress: Progress | None = None) -> Discovery:
    root = Path(root)
    series_list, scan = open_path(root, progress=progress)
    found = Discovery()
    dicom_folders = set()
    for series in series_list:
        first = series.first
        key = folder_key(root, first.path)
        if first.modality != "CT":
            found.skipped_series.append(f"{series.label} in {first.path.parent}: modality {first.modality or '?'}, "
                                        "not CT; not a case")
            continue
        dicom_folders.add(key)
        found.cases.append(Case(_case_name(root, series), key, series=series))
    for problem in scan.problems:
        if problem.path.suffix.lower() == ".dcm":
            found.warnings.append(f"{problem.path}: skipped by the scan: {problem.reason}")
    for obj in scan.non_image:
        _read(found, obj.path, _dicom_reader(obj.sop_class_uid))
    for path in scan.volume_files:
        key = folder_key(root, path)
        if is_label_map(path):
            _read(found, path, lambda p, key=key: LabelMap.from_file(p, key))
        elif key not in dicom_folders:
            found.cases.append(Case(str(path.relative_to(root)) if path.is_relative_to(root) else path.name, key,
                                    image_file=path))
    _text_references(root, found)
    found.cases.sort(key=lambda c: c.name)
    return found


def _case_name(root: Path, series: Series) -> str:
    folder = series.first.path.parent
    where = str(folder.relative_to(root)) if folder.is_relative_to(root) else folder.name
    return f"{where or '.'} #{series.first.series_number if series.first.series_number is not None else '?'}"


def _dicom_reader(sop_class: str):
    if sop_class in SEG_CLASSES:
        return SegReference.from_file
    if sop_class == RTSTRUCT_CLASS:
        return RtStruct.from_file
    if sop_class.startswith(SR_CLASS_PREFIX):
        return SrReference.from_file
    return None


def _read(found: Discovery, path: Path, reader) -> None:
    if reader is None:
        return
    try:
        found.references.append(reader(path))
    except ReferenceError as exc:
        found.warnings.append(f"reference not used: {exc}")
    except Exception as exc:  # a reader's library failing on a strange file must not stop the run
        found.warnings.append(f"reference not used: {path}: cannot be read ({type(exc).__name__}: {exc})")


def _text_references(root: Path, found: Discovery) -> None:
    """LIDC / VOC XML and LUNA16 tables: the scan does not look at these, so walk for them."""
    voc: dict[Path, list[VocSlice]] = defaultdict(list)
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            path = Path(folder) / name
            suffix = path.suffix.lower()
            if suffix == ".xml":
                kind = _xml_root(path)
                if kind == "LidcReadMessage":
                    _read(found, path, LidcXml.from_file)
                elif kind == "annotation":
                    try:
                        boxes = VocSlice.from_file(path)
                    except ReferenceError as exc:
                        found.warnings.append(f"reference not used: {exc}")
                    else:
                        voc[path.parent].append(boxes)
            elif suffix in TEXT_SUFFIXES and path.stat().st_size < MAX_TEXT_BYTES:
                if LunaCsv.header_line(path.read_text(errors="replace")) is not None:
                    _read(found, path, LunaCsv.from_file)
    for folder, slices in sorted(voc.items()):
        found.references.append(VocBoxes.from_files(folder, slices))


def _xml_root(path: Path) -> str:
    """The root element's name without namespace, or '' when the file is not XML."""
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return element.tag.rsplit("}", 1)[-1]
    except (ET.ParseError, OSError):
        return ""
    return ""
