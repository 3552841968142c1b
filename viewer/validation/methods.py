"""What is validated: the nodule detection, a segmentation model's nodule channel, or a
classifier's explanation maps. Each method turns one loaded series into Findings (and, for a
classifier, pointing-game rows per reference lesion)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from viewer.core.errors import RadSightError
from viewer.core.volume import Volume
from viewer.validation.lesion import ReferenceLesion, crop
from viewer.validation.matching import Finding

Progress = Callable[[int, int, str], None]
LESION_LABEL_WORDS = ("nodule", "lesion", "mass", "tumour", "tumor")
CHANNEL_THRESHOLD = 0.5  # channel_candidates' default: its components and ours are the same


class DetectorMethod:
    """`viewer.analysis.detection.detect_in_study` with the bundled models."""

    kind = "detector"

    def __init__(self, provider: str | None = None, registry=None):
        from viewer.analysis.detection import CLASSIFIER_ID, SEG_MODEL_ID
        from viewer.inference.registry import discover

        self.provider, self.registry = provider, registry or discover()
        self.card_id = SEG_MODEL_ID
        self.models = [self.registry.get(SEG_MODEL_ID).ref, self.registry.get(CLASSIFIER_ID).ref]

    def findings(self, volume: Volume, progress: Progress | None = None, cancelled=None) -> tuple[list[Finding], dict]:
        from viewer.analysis.detection import detect_in_study
        from viewer.analysis.patterns import split_pattern

        # As `radsight analyze` reports them: multifocal opacities are one pattern, not nodules,
        # so its members are neither hits nor false positives (the case row lists the pattern).
        pattern, detections = split_pattern(detect_in_study(volume, provider=self.provider, progress=progress,
                                                            cancelled=cancelled, registry=self.registry))
        out = []
        for n, d in enumerate(detections, 1):
            m = d.measurement
            record = d.to_json()
            details = {k: record[k] for k in ("long_axis_mm", "short_axis_mm", "mean_hu", "juxtapleural",
                                                "score_basis") if k in record}
            out.append(Finding(f"D{n}", tuple(m.centre_lps_mm), float(d.score), float(m.mean_diameter_mm),
                               float(m.volume_mm3), m.mask, str(m.type),
                               str(record.get("kind") or getattr(d, "kind", "") or getattr(m, "kind", "") or ""),
                               d.method, details))
        return out, ({"pattern": pattern.to_json()} if pattern else {})


class SegmentationMethod:
    """A segmentation model: its nodule (lesion) channel's components are the findings, scored
    by their mean probability, as `viewer.analysis.candidates.channel_candidates` makes them."""

    kind = "segmentation"

    def __init__(self, card, provider: str | None = None):
        self.card, self.provider = card, provider
        self.card_id = card.id
        self.models = [card.ref]
        values = [i.value for i in card.labels if any(w in i.name.lower() for w in LESION_LABEL_WORDS)]
        if not values:
            raise RadSightError(f"model {card.id} has no nodule or lesion label (labels: "
                                f"{', '.join(i.name for i in card.labels)}); nothing to validate against lesions")
        self.lesion_value = values[0]
        self.lesion_name = next(i.name for i in card.labels if i.value == self.lesion_value)

    def findings(self, volume: Volume, progress: Progress | None = None, cancelled=None) -> tuple[list[Finding], dict]:
        from viewer.analysis.candidates import channel_candidates
        from viewer.inference.run import segment

        mask = segment(volume, self.card, provider=self.provider, progress=progress, cancelled=cancelled)
        label = mask.labels.voxels == self.lesion_value
        confidence = mask.confidence.voxels if mask.confidence is not None else label.astype(np.float32)
        probability = mask.labels.with_voxels(np.where(label, confidence, 0.0).astype(np.float32), unit="1")
        candidates = channel_candidates(probability, CHANNEL_THRESHOLD)
        pieces, _ = ndimage.label(probability.voxels >= CHANNEL_THRESHOLD)
        voxel_mm3 = float(np.prod(volume.spacing))
        out = []
        for n, candidate in enumerate(candidates, 1):
            piece = pieces == n
            size = float(piece.sum()) * voxel_mm3
            out.append(Finding(f"C{n}", candidate.point_lps, float(candidate.response), 2 * candidate.scale_mm, size,
                               crop(piece, volume), method=f"{self.card.id} '{self.lesion_name}' channel"))
        return out, {"label_mask": label}


class ClassifierMethod:
    """A classifier's explanation map at each reference lesion's centre: the pointing game (is the
    map's peak inside the lesion?) and the share of the map's mass inside it
    (viewer.inference.explain_quality)."""

    kind = "classification"

    def __init__(self, card, provider: str | None = None):
        if not card.crop_mm:
            raise RadSightError(f"model {card.id} classifies whole volumes, not a crop around a point; the "
                                "pointing game needs a classifier of a region around a lesion")
        self.card, self.provider = card, provider
        self.card_id = card.id
        self.models = [card.ref]

    def findings(self, volume: Volume, progress: Progress | None = None, cancelled=None) -> tuple[list[Finding], dict]:
        return [], {}

    def explain(self, volume: Volume, lesion: ReferenceLesion) -> dict:
        from viewer.inference.explain import explain
        from viewer.inference.explain_quality import mass_inside, peak_lps

        heatmap = explain(volume, self.card, lesion.centre_lps_mm, provider=self.provider)
        peak = peak_lps(heatmap)
        return {"method": heatmap.method, "class": heatmap.target.name, "probability": round(heatmap.probability, 4),
                "peak_lps_mm": [round(float(v), 2) for v in peak],
                "peak_distance_mm": round(float(np.linalg.norm(peak - np.asarray(lesion.centre_lps_mm))), 2),
                "peak_inside": bool(lesion.contains(peak[None])[0]),
                "mass_inside": round(mass_inside(heatmap, lesion.contains), 4)}
