"""AI masks as DICOM Segmentation objects (highdicom), referencing the source series and naming
the algorithm, as IHE AI Results asks; and reading them back.

A mask made outside its model's validated domain (viewer.inference.domain) says so where the SEG
IOD has room for text: Series Description (0008,103E) and Content Description (0070,0081), both
LO of 64 characters, carry "OUTSIDE VALIDATED DOMAIN", and each segment's Segment Description
(0062,0006), ST of up to 1024 characters, the reasons. A viewer that lists series or segments
therefore shows the flag without knowing RadSight."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from viewer import __version__
from viewer.core.errors import RadSightError
from viewer.core.results import Mask
from viewer.dicom.series import Series

# Property category for anything we cannot name better: SCT 49755003 "Morphologically altered structure"
# for findings, SCT 91723000 "Anatomical structure" for organs.
FINDING = hd.sr.CodedConcept("49755003", "SCT", "Morphologically Altered Structure")
ANATOMY = hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure")
FINDING_CODES = {"27925004", "786838002"}  # SCT nodule, pulmonary nodule
OUTSIDE_FLAG = "OUTSIDE VALIDATED DOMAIN"
ST_MAX = 1024  # Short Text (ST) value length, PS3.5 6.2


def write_seg(mask: Mask, series: Series, path: Path | str, series_number: int = 900,
              outside_domain: str | None = None) -> Path:
    """Write `mask` (on `series`' grid) as a binary DICOM SEG referencing the series' images.
    `outside_domain`: the input check's reasons when the model ran outside its validated domain."""
    plan = series.plan
    if not plan.is_direct:
        raise RadSightError(f"{series.label}: the volume was resampled (tilt or uneven spacing), so its "
                            "voxels do not map one-to-one onto source images; SEG export needs a regular series")
    if mask.labels.shape != plan.shape:
        raise RadSightError(f"mask shape {mask.labels.shape} does not match {series.label} {plan.shape}")
    # Headers only: highdicom copies the references and geometry, never the source pixels.
    sources = [pydicom.dcmread(r.path, stop_before_pixels=True) for r in plan.records]
    algorithm = hd.AlgorithmIdentificationSequence(
        name=mask.model.name or mask.model.id, version=mask.model.version,
        family=codes.cid7162.ArtificialIntelligence)
    present = [info for info in mask.label_info if np.any(mask.labels.voxels == info.value)]
    if not present:
        raise RadSightError(f"model {mask.model} found nothing to segment in {series.label}; no SEG written")
    descriptions = []
    labels = mask.labels.voxels
    top = int(labels.max())
    numbers = np.zeros(max(top, *(info.value for info in present)) + 1, np.uint8 if len(present) < 256 else np.uint16)
    for number, info in enumerate(present, 1):
        numbers[info.value] = number
        code = hd.sr.CodedConcept(*info.code) if info.code else hd.sr.CodedConcept("85756007", "SCT", "Tissue")
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=info.name[:64],
            segmented_property_category=FINDING if info.code and info.code[0] in FINDING_CODES else ANATOMY,
            segmented_property_type=code, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm, tracking_uid=generate_uid(), tracking_id=f"{mask.model.id}:{info.name}"[:64],
            display_color=hd.color.CIELabColor.from_rgb(*(int(round(255 * c)) for c in info.color))))
    if outside_domain:
        text = f"AI result outside the validated domain: {' '.join(outside_domain.split())}"
        for description in descriptions:
            description.SegmentDescription = text if len(text) <= ST_MAX else text[:ST_MAX - 3] + "..."
    flag = f" {OUTSIDE_FLAG}" if outside_domain else ""
    # One label map (frames, rows, cols) holding segment numbers: the labels never overlap, and
    # highdicom then checks one maximum instead of summing a 4-D stack of one plane per segment
    # (3.4 s and a study-sized copy per segment on a 512x512x255 CT).
    direct = top <= len(present) and all(info.value == n for n, info in enumerate(present, 1))
    pixel_array = labels if direct else numbers[labels]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixel_array, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=series_number,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="RadSight",
        manufacturer_model_name="RadSight", software_versions=__version__, device_serial_number="0",
        content_description=_fit(f"{mask.model.id} {mask.model.version}" if flag else
                                 f"AI segmentation by {mask.model.id} {mask.model.version}", flag),
        content_creator_name="RadSight^AI", series_description=_fit(f"AI SEG {mask.model.id}", flag))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def _fit(text: str, flag: str, limit: int = 64) -> str:
    """`text` shortened so that `flag` always fits in an LO value."""
    return text[:limit - len(flag)] + flag


def read_seg_labels(path: Path | str, volume) -> tuple[object, dict[int, str]]:
    """A SEG's segments as one label volume on `volume`'s grid (value = segment number; where
    segments overlap the higher number wins) and the segment names. Frames are placed by their
    Image Position (Patient), so any frame order works."""
    from viewer.core.volume import Volume

    seg = hd.seg.segread(str(path))
    labels = np.zeros(volume.shape, np.uint8)
    frames = seg.pixel_array if seg.pixel_array.ndim == 3 else seg.pixel_array[None]
    # Attributes common to all frames live in the Shared Functional Groups (PS3.3 C.7.6.16).
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else {}
    for frame, fg in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        position = np.array([float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient])
        k = int(round(volume.lps_to_index(position)[2]))
        if not 0 <= k < volume.shape[0] or frame.shape != volume.shape[1:]:
            raise RadSightError(f"{path}: frame at {position.round(2).tolist()} mm does not lie on the study's grid")
        ident = fg.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
        number = int(ident[0].ReferencedSegmentNumber)
        labels[k][frame.astype(bool)] = number
    names = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    return Volume(labels, volume.affine, volume.frame_of_reference_uid, volume.source), names
