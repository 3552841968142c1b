"""What RadSight keeps of one image frame's header: enough to sort, check and decode it.

A `SliceRecord` is built once per frame during the scan (a single-frame file gives one, an
enhanced multi-frame file one per frame) and is all the geometry code and the store ever see.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

PIXEL_DATA_TAG = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF

# Objects that carry pixels but are not a volume of the patient to view as grey values: they are
# results that later stages read (SEG masks, parametric maps) or documents.
DERIVED_OBJECT_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation",
    "1.2.840.10008.5.1.4.1.1.30": "Parametric Map",
    "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
}


@dataclass(frozen=True)
class SliceRecord:
    """One 2-D frame: where it lies (LPS mm), how it is stored, and where its pixels are."""

    path: Path
    frame: int | None  # 0-based frame in a multi-frame file; None for a single-frame file
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    modality: str
    series_number: int | None
    series_description: str
    frame_of_reference_uid: str | None
    instance_number: int | None
    rows: int
    cols: int
    position: tuple[float, float, float] | None  # (0020,0032) Image Position (Patient)
    orientation: tuple[float, ...] | None  # (0020,0037) row then column direction cosines
    pixel_spacing: tuple[float, float] | None  # (0028,0030) between rows, between columns
    spacing_is_detector: bool  # spacing from (0018,1164) Imager Pixel Spacing: detector plane
    slice_thickness: float | None
    rescale_slope: float
    rescale_intercept: float
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric: str
    transfer_syntax: str
    number_of_frames: int
    pixel_offset: int | None  # byte offset of the native Pixel Data value in the file
    split_key: tuple = ()  # acquisition / temporal / echo: tells apart frames at one position
    window: tuple[float, float] | None = None
    study_date: str = ""
    patient_id: str = ""
    patient_name: str = ""
    study_description: str = ""
    encapsulated_offset: int | None = None  # offset of the encapsulated Pixel Data value (its first item)

    @property
    def is_native_fast(self) -> bool:
        """Uncompressed little-endian grey pixels we can read straight into the volume."""
        return (self.pixel_offset is not None and self.samples_per_pixel == 1
                and self.bits_allocated in (8, 16, 32))

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.cols * self.samples_per_pixel * max(self.bits_allocated, 8) // 8

    def native_dtype(self) -> np.dtype:
        kind = "i" if self.pixel_representation else "u"
        return np.dtype(f"<{kind}{self.bits_allocated // 8}")

    def with_frame(self, **changes) -> "SliceRecord":
        return replace(self, **changes)


def _floats(value, n: int) -> tuple[float, ...] | None:
    """Numbers of a multi-valued DS/FD attribute, or None when absent, short or not finite."""
    if value is None:
        return None
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(np.isfinite(values)):
        return None
    return values


def _float(value, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    try:
        if isinstance(value, (list, tuple, MultiValue)):
            value = value[0]  # first of several windows or values
        result = float(value)
    except (TypeError, ValueError, IndexError):
        return default
    return result if np.isfinite(result) else default


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _image_type(value) -> str:
    """(0008,0008) Image Type as 'A\\B\\C', each value stripped of padding."""
    if value is None:
        return ""
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    return "\\".join(str(v).strip() for v in items)


def read_pixel_element_header(fp, is_implicit: bool) -> tuple[int, int] | None:
    """Read the tag and length at the file position where pydicom stopped before pixels.

    pydicom's `stop_before_pixels` leaves the file at the start of (7FE0,0010); reading its
    8 or 12 header bytes here tells the value's offset and declared length without loading the
    pixels, which is what makes the scan cheap and the load a single read per slice.
    Returns (value_offset, length) or None when no Pixel Data element follows.
    """
    start = fp.tell()
    head = fp.read(12)
    if len(head) < 8:
        return None
    group, elem = struct.unpack("<HH", head[:4])
    if (group << 16 | elem) != PIXEL_DATA_TAG:
        return None
    if is_implicit:
        (length,) = struct.unpack("<I", head[4:8])
        return start + 8, length
    if len(head) < 12:
        return None
    vr = head[4:6]
    if vr in (b"OB", b"OW", b"OF", b"UN", b"OD", b"OL", b"OV", b"UT", b"UC", b"UR", b"SV", b"UV", b"SQ"):
        (length,) = struct.unpack("<I", head[8:12])
        return start + 12, length
    (length,) = struct.unpack("<H", head[6:8])
    return start + 8, length


def base_record(path: Path, ds: Dataset, transfer_syntax: str, pixel_offset: int | None) -> SliceRecord:
    """The per-file part of a record; multi-frame files refine it per frame (see multiframe.py)."""
    spacing = _floats(ds.get("PixelSpacing"), 2)
    detector = False
    if spacing is None:
        spacing = _floats(ds.get("ImagerPixelSpacing"), 2)
        detector = spacing is not None
    window = None
    wc, ww = _float(ds.get("WindowCenter"), None), _float(ds.get("WindowWidth"), None)
    if wc is not None and ww is not None and ww > 0:
        window = (wc, ww)
    split_key = (
        _int(ds.get("AcquisitionNumber")) if str(ds.get("Modality", "")) != "CT" else None,
        _int(ds.get("TemporalPositionIdentifier")),
        _int(ds.get("EchoNumbers")),
        _image_type(ds.get("ImageType")),
    )
    return SliceRecord(
        path=path,
        frame=None,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        study_uid=str(ds.get("StudyInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        modality=str(ds.get("Modality", "")),
        series_number=_int(ds.get("SeriesNumber")),
        series_description=str(ds.get("SeriesDescription", "")),
        frame_of_reference_uid=str(ds.FrameOfReferenceUID) if "FrameOfReferenceUID" in ds else None,
        instance_number=_int(ds.get("InstanceNumber")),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        position=_floats(ds.get("ImagePositionPatient"), 3),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
        pixel_spacing=spacing,
        spacing_is_detector=detector,
        slice_thickness=_float(ds.get("SliceThickness"), None),
        rescale_slope=_float(ds.get("RescaleSlope"), 1.0) or 1.0,
        rescale_intercept=_float(ds.get("RescaleIntercept"), 0.0),
        bits_allocated=int(ds.get("BitsAllocated", 16)),
        bits_stored=int(ds.get("BitsStored", ds.get("BitsAllocated", 16))),
        pixel_representation=int(ds.get("PixelRepresentation", 0)),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1)),
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        transfer_syntax=transfer_syntax,
        number_of_frames=max(_int(ds.get("NumberOfFrames")) or 1, 1),
        pixel_offset=pixel_offset,
        split_key=split_key,
        window=window,
        study_date=str(ds.get("StudyDate", "")),
        patient_id=str(ds.get("PatientID", "")),
        patient_name=str(ds.get("PatientName", "")),
        study_description=str(ds.get("StudyDescription", "")),
    )


def transfer_syntax_name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name and name != uid else f"unknown transfer syntax {uid}"
