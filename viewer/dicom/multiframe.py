"""Per-frame records of multi-frame images.

Enhanced CT/MR (PS3.3 C.7.6.16 Multi-frame Functional Groups) keep each frame's position,
orientation, spacing and rescale in (5200,9230) Per-frame Functional Groups, falling back to
(5200,9229) Shared Functional Groups. Older multi-frame objects (RT Dose, some NM/US) give one
position and a (3004,000C) Grid Frame Offset Vector instead.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from viewer.dicom.header import SliceRecord, _float, _floats, _int


def _group_item(fg: Dataset | None, shared: Dataset | None, sequence: str) -> Dataset | None:
    for source in (fg, shared):
        if source is not None and sequence in source and len(source[sequence].value):
            return source[sequence].value[0]
    return None


def frame_records(base: SliceRecord, ds: Dataset) -> list[SliceRecord]:
    """One record per frame; a single-frame object gives [base]."""
    n = base.number_of_frames
    if n <= 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        return [base]
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else None
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    offsets = _grid_offsets(ds, n)
    records = []
    for f in range(n):
        fg = per_frame[f] if f < len(per_frame) else None
        changes: dict = {"frame": f, "instance_number": f + 1}
        if base.pixel_offset is not None and base.bits_allocated >= 8:
            changes["pixel_offset"] = base.pixel_offset + f * base.frame_bytes
        if (item := _group_item(fg, shared, "PlanePositionSequence")) is not None:
            changes["position"] = _floats(item.get("ImagePositionPatient"), 3)
        elif offsets is not None and base.position is not None and base.orientation is not None:
            normal = np.cross(base.orientation[:3], base.orientation[3:])
            changes["position"] = tuple(float(v) for v in np.add(base.position, offsets[f] * normal))
        if (item := _group_item(fg, shared, "PlaneOrientationSequence")) is not None:
            changes["orientation"] = _floats(item.get("ImageOrientationPatient"), 6)
        if (item := _group_item(fg, shared, "PixelMeasuresSequence")) is not None:
            changes["pixel_spacing"] = _floats(item.get("PixelSpacing"), 2) or base.pixel_spacing
            changes["slice_thickness"] = _float(item.get("SliceThickness"), base.slice_thickness)
        if (item := _group_item(fg, shared, "PixelValueTransformationSequence")) is not None:
            changes["rescale_slope"] = _float(item.get("RescaleSlope"), 1.0) or 1.0
            changes["rescale_intercept"] = _float(item.get("RescaleIntercept"), 0.0)
        if (item := _group_item(fg, shared, "FrameVOILUTSequence")) is not None:
            wc, ww = _float(item.get("WindowCenter"), None), _float(item.get("WindowWidth"), None)
            if wc is not None and ww:
                changes["window"] = (wc, ww)
        if (item := _group_item(fg, None, "FrameContentSequence")) is not None:
            changes["split_key"] = base.split_key + (
                str(item.get("StackID", "")), _int(item.get("TemporalPositionIndex")))
        records.append(base.with_frame(**changes))
    return records


def _grid_offsets(ds: Dataset, n: int) -> list[float] | None:
    """(3004,000C) Grid Frame Offset Vector, relative to the first frame (PS3.3 C.8.8.3.2)."""
    values = ds.get("GridFrameOffsetVector")
    if values is None or len(values) != n:
        return None
    offsets = [float(v) for v in values]
    return [v - offsets[0] for v in offsets]
