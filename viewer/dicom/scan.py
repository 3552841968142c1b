"""Find DICOM images in folders, files and DICOMDIRs, and say why any file was skipped.

Reading is lenient (STYLE.md rule 3): a file without the 128-byte preamble is still read when it
starts like a DICOM data set, and every file that cannot be used gets a one-line reason naming
it. Nothing here raises for a bad file; the caller decides what to do with the problems.
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder
from pydicom.uid import UID

from viewer.core.errors import DicomReadError, FileProblem
from viewer.dicom.fastheader import read_header
from viewer.dicom.header import (DERIVED_OBJECT_CLASSES, SliceRecord, base_record,
                                 read_pixel_element_header, transfer_syntax_name)
from viewer.dicom.multiframe import frame_records
from viewer.dicom.pixels import RETIRED_JPEG_SYNTAXES, libjpeg_available

# Research formats read through SimpleITK rather than as DICOM.
VOLUME_FILE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class NonImageObject:
    """A DICOM object in the folder that is not an image to stack (SR, RTSTRUCT, SEG, ...)."""

    path: Path
    sop_class_uid: str
    modality: str
    series_uid: str

    @property
    def kind(self) -> str:
        return DERIVED_OBJECT_CLASSES.get(self.sop_class_uid) or UID(self.sop_class_uid).name or "unknown"

    def to_json(self) -> dict:
        return {"file": str(self.path), "sop_class_uid": self.sop_class_uid, "kind": self.kind,
                "modality": self.modality, "series_uid": self.series_uid}


@dataclass
class ScanResult:
    records: list[SliceRecord] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    non_image: list[NonImageObject] = field(default_factory=list)
    volume_files: list[Path] = field(default_factory=list)
    files_seen: int = 0


def is_volume_file(path: Path) -> bool:
    return path.name.lower().endswith(VOLUME_FILE_SUFFIXES)


def _looks_like_dataset_start(head: bytes) -> bool:
    """True when a file without preamble starts with a plausible group 0002 or 0008 element."""
    if len(head) < 8:
        return False
    for order in "<>":  # little- or big-endian data sets
        group, elem = struct.unpack(order + "HH", head[:4])
        if group in (0x0002, 0x0008) and elem < 0x2000:
            return True
    return False


def _decoder_problem(ts: str) -> str | None:
    """Why pixels of this transfer syntax cannot be decoded here, or None when they can."""
    try:
        decoder = get_decoder(UID(ts))
    except NotImplementedError:
        if ts in RETIRED_JPEG_SYNTAXES and libjpeg_available():
            return None
        return (f"pixel data compressed with {transfer_syntax_name(ts)}, which RadSight cannot "
                "decode (proprietary or unsupported); convert it to a standard syntax")
    if not decoder.is_available:
        return (f"pixel data compressed with {transfer_syntax_name(ts)}, but no installed decoder "
                "supports it; install pylibjpeg or python-gdcm")
    return None


def _read_with_pydicom(path: Path):
    """The full reader: any encoding pydicom understands; stops before the pixels."""
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
            has_preamble = head[128:132] == b"DICM"
            if not has_preamble and not _looks_like_dataset_start(head):
                raise DicomReadError(path, "not a DICOM file (no 'DICM' marker at byte 128 and "
                                     "no DICOM element at the start)")
            fp.seek(0)
            try:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, force=not has_preamble)
            except InvalidDicomError as exc:
                raise DicomReadError(path, f"not a DICOM file: {exc}") from None
            except Exception as exc:  # pydicom raises many types for damaged headers
                raise DicomReadError(path, f"header cannot be parsed ({type(exc).__name__}: {exc})") from None
            ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
            if not ts:
                ts = "1.2.840.10008.1.2" if ds.is_implicit_VR else "1.2.840.10008.1.2.1"
            pixel = None
            if ts not in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"):  # not deflated/big-endian
                pixel = read_pixel_element_header(fp, is_implicit=ds.is_implicit_VR)
    except DicomReadError:
        raise
    except OSError as exc:
        raise DicomReadError(path, f"cannot be read: {exc.strerror or exc}") from None
    media_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    return ds, ts, pixel, media_class


def read_records(path: Path, fast: bool = True) -> list[SliceRecord] | NonImageObject:
    """Records of one file's frames, or what non-image object it is; DicomReadError otherwise.

    `fast` tries the narrow header reader first (fastheader.py); pydicom reads the rest.
    pydicom's warnings about invalid values are silenced: the reasons we raise say more.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _read_records(path, fast)


def _read_records(path: Path, fast: bool) -> list[SliceRecord] | NonImageObject:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DicomReadError(path, f"cannot be opened: {exc.strerror}") from None
    if size == 0:
        raise DicomReadError(path, "empty file (0 bytes)")
    parsed = read_header(path) if fast else None
    if parsed is not None:
        ds, ts, pixel, _ = parsed
        media_class = ds.get("MediaStorageSOPClassUID", "")
    else:
        ds, ts, pixel, media_class = _read_with_pydicom(path)

    sop_class = str(ds.get("SOPClassUID", "") or media_class or "")
    if not sop_class and "Rows" not in ds:
        raise DicomReadError(path, "not a DICOM image or object: no SOP Class UID and no Rows")
    is_image_class = "Image Storage" in (UID(sop_class).name or "") and sop_class not in DERIVED_OBJECT_CLASSES
    if is_image_class and ("Rows" not in ds or "Columns" not in ds):
        raise DicomReadError(path, (f"incomplete {UID(sop_class).name} object: the header ends after "
                                    f"{size} bytes without Rows/Columns (file truncated?)"))
    if "Rows" not in ds or "Columns" not in ds or sop_class in DERIVED_OBJECT_CLASSES:
        return NonImageObject(path, sop_class, str(ds.get("Modality", "")), str(ds.get("SeriesInstanceUID", "")))

    base = base_record(path, ds, ts, None)
    compressed = UID(ts).is_compressed if UID(ts).is_transfer_syntax else True
    if compressed and ts != "1.2.840.10008.1.2.1.99":
        if (reason := _decoder_problem(ts)) is not None:
            raise DicomReadError(path, reason)
    if pixel is not None:
        offset, length = pixel
        if length != 0xFFFFFFFF:
            expected = base.frame_bytes * base.number_of_frames
            if base.photometric.startswith("YBR") and base.photometric.endswith("422"):
                expected = expected * 2 // 3  # chroma subsampled 2:1 horizontally (PS3.3 C.7.6.3.1.2)
            if base.bits_allocated == 1:
                expected = (base.rows * base.cols * base.number_of_frames + 7) // 8
            if length < expected:
                raise DicomReadError(path, (
                    f"Pixel Data has {length} bytes but Rows x Columns x Frames x BitsAllocated "
                    f"({base.rows} x {base.cols} x {base.number_of_frames} x {base.bits_allocated}) "
                    f"needs {expected}: header and pixels disagree"))
            if offset + expected > size:
                raise DicomReadError(path, (
                    f"file truncated: Pixel Data needs {expected} bytes but only "
                    f"{max(size - offset, 0)} remain"))
            if not compressed and base.bits_allocated >= 8:
                base = base.with_frame(pixel_offset=offset)
        elif compressed:
            base = base.with_frame(encapsulated_offset=offset)  # decoders.FragmentSource reads from here
    elif ts not in ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"):
        raise DicomReadError(path, "no Pixel Data (7FE0,0010): image header without pixels")
    if base.bits_allocated not in (1, 8, 16, 32):
        raise DicomReadError(path, f"Bits Allocated {base.bits_allocated} is not supported")
    return frame_records(base, ds)


def _walk(path: Path) -> Iterable[Path]:
    if path.is_file():
        yield path
        return
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):  # ._* resource forks, .DS_Store
                yield Path(root) / name


def _dicomdir_references(dicomdir: Path, problems: list[FileProblem]) -> list[Path]:
    """Files a DICOMDIR points at; a missing one becomes a problem naming both files."""
    try:
        ds = pydicom.dcmread(dicomdir)
        records = ds.DirectoryRecordSequence
    except Exception as exc:
        problems.append(FileProblem(dicomdir, f"DICOMDIR cannot be read ({exc})"))
        return []
    found = []
    for record in records:
        ref = record.get("ReferencedFileID")
        if not ref:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        target = dicomdir.parent.joinpath(*parts)
        if not target.exists():
            # File IDs are upper case on CD media but folders are often copied in lower case.
            target_ci = dicomdir.parent.joinpath(*(p.lower() for p in parts))
            target = target_ci if target_ci.exists() else target
        if target.exists():
            found.append(target)
        else:
            problems.append(FileProblem(target, f"listed in DICOMDIR {dicomdir} but missing"))
    return found


def scan(paths: Path | str | Iterable[Path | str], progress: Progress | None = None,
         cancelled: Callable[[], bool] | None = None) -> ScanResult:
    """Scan files, folders (recursively) and DICOMDIRs for images; never raises for bad files."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    result = ScanResult()
    files: list[Path] = []
    for root in map(Path, paths):
        if not root.exists():
            result.problems.append(FileProblem(root, "does not exist"))
            continue
        files.extend(_walk(root))
    dicomdirs = [f for f in files if f.name.upper() == "DICOMDIR"]
    seen = {f.resolve() for f in files}
    for dicomdir in dicomdirs:
        for target in _dicomdir_references(dicomdir, result.problems):
            if target.resolve() not in seen:
                seen.add(target.resolve())
                files.append(target)
    total = len(files)
    for n, path in enumerate(files, 1):
        if cancelled is not None and cancelled():
            break
        if progress is not None and (n % 64 == 0 or n == total):
            progress(n, total, "reading headers")
        result.files_seen += 1
        if path.name.upper() == "DICOMDIR":
            continue
        if is_volume_file(path):
            result.volume_files.append(path)
            continue
        try:
            found = read_records(path)
        except DicomReadError as exc:
            result.problems.append(FileProblem(exc.path, exc.reason))
            continue
        if isinstance(found, NonImageObject):
            result.non_image.append(found)
        else:
            result.records.extend(found)
    return result
