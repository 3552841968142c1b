"""Is this study inside what the model was validated on? The run-time input check.

A model card's `training_data` (viewer/inference/card.py) says what the model has seen: synthetic
or real images, scanners, kernels, pixel spacing and slice thickness, and the HU of air, aerated
lung and soft tissue and the noise of its training images. `check_domain` compares one study with
that, from its header (viewer.dicom.study_facts.AcquisitionFacts) and from the image itself
(`measure_image`), and returns `within` plus one sentence per difference with the number seen and
the card's range. The results of a model run outside its domain are then marked "outside the
validated domain" wherever they are shown (JSON, AI panel, SEG, SR, PDF): a model that has only
seen synthetic phantoms says nothing trustworthy about a patient's CT, and the reader must know.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from viewer.core.volume import Volume
from viewer.dicom.study_facts import AcquisitionFacts
from viewer.inference.card import ModelCard

OUTSIDE = "outside the validated domain"
MAX_SLICES = 16  # axial slices measured: enough for robust medians, fast on a 512 x 512 x 300 CT
BODY_HU = -500.0  # above: patient (and table); below: air or lung
VALID_HU = -1500.0  # below: padding outside the reconstructed field of view, not air
SOFT_TISSUE_HU = (-50.0, 150.0)  # muscle, blood, organs (fat, bone and lung lie outside)
MIN_VOXELS = 500


@dataclass(frozen=True)
class ImageStats:
    """What `measure_image` saw: median HU of air outside the body, of aerated lung and of soft
    tissue, and the noise (median local standard deviation in soft tissue, HU); None where the
    region had fewer than MIN_VOXELS voxels in the slices measured."""

    air_hu: float | None
    lung_hu: float | None
    soft_tissue_hu: float | None
    noise_hu: float | None
    slices: int

    def region(self, name: str) -> float | None:
        return {"air": self.air_hu, "lung": self.lung_hu, "soft_tissue": self.soft_tissue_hu}[name]

    def to_json(self) -> dict:
        return {"air_hu": self.air_hu, "lung_hu": self.lung_hu, "soft_tissue_hu": self.soft_tissue_hu,
                "noise_hu": self.noise_hu, "slices_measured": self.slices}


@dataclass(frozen=True)
class DomainCheck:
    """The input check of one model on one study: `reasons` (empty when within) are sentences
    with the numbers seen and the card's range; `notes` what could not be checked."""

    model_id: str
    model_version: str
    within: bool
    reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()
    measured: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        """One line for lists and descriptions."""
        return "within the validated domain" if self.within else OUTSIDE

    def to_json(self) -> dict:
        return {"model": self.model_id, "version": self.model_version, "within": self.within,
                "status": self.label, "reasons": list(self.reasons), "notes": list(self.notes),
                "measured": self.measured}


_REGION_NAMES = {"air": "air outside the body", "lung": "aerated lung", "soft_tissue": "soft tissue"}


def measure_image(volume: Volume) -> ImageStats:
    """Median HU of air outside the body, aerated lung and soft tissue, and the noise, on up to
    MAX_SLICES evenly spaced axial slices. Per slice the body is the largest connected region
    above -500 HU with its holes (the lungs) filled; air is below -500 HU at least 5 pixels
    outside it (padding below -1500 HU left out), lung is below -500 HU inside it, soft tissue
    is where the slice smoothed over 1.5 pixels lies in -50..150 HU inside it, shrunk by 2
    pixels. Noise is the median 5 x 5 standard deviation over that soft tissue: its edges and
    texture are a small share, so the median is the noise (compared with the same measure on
    the training images, so its bias does not matter). scipy.ndimage does the morphology."""
    voxels = volume.voxels
    ks = np.unique(np.linspace(0, voxels.shape[0] - 1, min(MAX_SLICES, voxels.shape[0])).round().astype(int))
    air, lung, soft, noise = [], [], [], []
    box = np.ones((3, 3), bool)
    for k in ks:
        hu = voxels[k].astype(np.float32)
        valid = hu > VALID_HU
        labels, n = ndimage.label((hu > BODY_HU) & valid)
        if n == 0:
            continue
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
        body = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
        outside = ~ndimage.binary_dilation(body, box, iterations=5)
        air.append(hu[outside & valid & (hu < BODY_HU)])
        lung.append(hu[ndimage.binary_erosion(body & (hu < BODY_HU), box, iterations=1)])
        smooth = ndimage.gaussian_filter(hu, 1.5)
        tissue = ndimage.binary_erosion(body & (smooth > SOFT_TISSUE_HU[0]) & (smooth < SOFT_TISSUE_HU[1]),
                                        box, iterations=2)
        soft.append(hu[tissue])
        mean = ndimage.uniform_filter(hu, 5)
        sd = np.sqrt(np.maximum(ndimage.uniform_filter(hu * hu, 5) - mean * mean, 0.0))
        noise.append(sd[tissue])

    def median(parts: list[np.ndarray]) -> float | None:
        values = np.concatenate(parts) if parts else np.empty(0)
        return round(float(np.median(values)), 1) if values.size >= MIN_VOXELS else None

    return ImageStats(median(air), median(lung), median(soft), median(noise), len(ks))


def check_domain(card: ModelCard, volume: Volume, facts: AcquisitionFacts | None,
                 stats: ImageStats | None = None) -> DomainCheck:
    """Compare the study with the card's `training_data`. `facts`: the series' header values
    (None for a volume without DICOM header, e.g. NIfTI); `stats`: `measure_image(volume)`,
    passed in when several models check the same study."""
    ref, td = card.ref, card.training_data
    if td is None:
        return DomainCheck(ref.id, ref.version, False,
                           (f"The model card ({card.card_path}) does not describe its training data "
                            "(training_data), so no study can be shown to be inside what it was validated on.",))
    facts = facts or AcquisitionFacts()
    stats = stats or measure_image(volume)
    reasons, notes = [], []
    scanner = " ".join(v for v in (facts.manufacturer, facts.model_name) if v) or None
    known = any(_same(facts.manufacturer, m) and _same(facts.model_name, n) for m, n in td.scanners)
    trained_on = "; ".join(f"{m}, {n}" for m, n in td.scanners)
    if td.kind == "synthetic" and not known:
        seen = f"comes from {scanner}" if scanner else "names no scanner (Manufacturer (0008,0070) absent)"
        reasons.append(f"The model was trained on synthetic data only ({td.source.split(':')[0]}); this study "
                       f"{seen}, not from that generator: real CT is outside what the model was validated on.")
    elif not known:
        reasons.append(f"Scanner {scanner or 'not stated'} is not one the model was trained on ({trained_on}).")
    if facts.kernel is None:
        notes.append("Convolution Kernel (0018,1210) not stated: kernel not checked.")
    elif not any(_same(facts.kernel, k) for k in td.kernels):
        reasons.append(f"Convolution kernel {facts.kernel} is not one the model was trained on "
                       f"({', '.join(td.kernels)}).")
    low, high = td.pixel_spacing_mm
    for spacing in sorted({round(v, 3) for v in volume.spacing[:2]}):
        if not low - 1e-3 <= spacing <= high + 1e-3:
            reasons.append(f"Pixel spacing {spacing:.2f} mm is outside the training range {low:g}-{high:g} mm.")
    thickness = facts.slice_thickness_mm
    if thickness is None:
        thickness = round(volume.spacing[2], 3)
        notes.append(f"Slice Thickness (0018,0050) not stated: the slice spacing {thickness:g} mm was used.")
    low, high = td.slice_thickness_mm
    if not low - 1e-3 <= thickness <= high + 1e-3:
        reasons.append(f"Slice thickness {thickness:g} mm is outside the training range {low:g}-{high:g} mm.")
    for region, (low, high) in td.hu.items():
        value = stats.region(region)
        if value is None:
            notes.append(f"Too little {_REGION_NAMES[region]} in the slices measured: its HU not checked.")
        elif not low <= value <= high:
            reasons.append(f"Median HU of {_REGION_NAMES[region]} {value:g} is outside the training range "
                           f"{low:g} to {high:g} HU.")
    low, high = td.noise_hu
    if stats.noise_hu is None:
        notes.append("Too little soft tissue in the slices measured: noise not checked.")
    elif not low <= stats.noise_hu <= high:
        reasons.append(f"Image noise {stats.noise_hu:g} HU (standard deviation in soft tissue) is outside the "
                       f"training range {low:g}-{high:g} HU.")
    measured = {"manufacturer": facts.manufacturer, "model_name": facts.model_name, "kernel": facts.kernel,
                "pixel_spacing_mm": [round(v, 3) for v in volume.spacing[:2]], "slice_thickness_mm": thickness,
                **stats.to_json()}
    return DomainCheck(ref.id, ref.version, not reasons, tuple(reasons), tuple(notes), measured)


def check_study(cards: list[ModelCard], volume: Volume, facts: AcquisitionFacts | None = None) -> dict[str, DomainCheck]:
    """Model id -> its input check on `volume`, the image measured once for all. Without `facts`
    they are read from the volume's source folder when it has one (a file that cannot be read
    leaves the header values unknown, which the checks say)."""
    if facts is None and volume.source.path:
        from viewer.core.errors import RadSightError
        from viewer.dicom.study_facts import read_acquisition_facts

        try:
            facts = read_acquisition_facts(volume.source.path, volume.source.series_uid)
        except RadSightError:
            facts = None
    stats = measure_image(volume) if any(c.training_data for c in cards) else None
    return {card.id: check_domain(card, volume, facts, stats) for card in cards}


def outside_summary(checks) -> str | None:
    """One sentence naming the models run outside their validated domain, with the reasons;
    None when every check is within. `checks`: DomainCheck objects or their to_json dicts."""
    parts = []
    for check in checks:
        data = check.to_json() if isinstance(check, DomainCheck) else check
        if data and not data.get("within", True):
            parts.append(f"{data['model']} {data['version']}: " + " ".join(data.get("reasons") or []))
    if not parts:
        return None
    return f"AI results {OUTSIDE}. " + " ".join(parts)


def _same(value: str | None, reference: str) -> bool:
    return value is not None and " ".join(value.split()).upper() == " ".join(reference.split()).upper()


DETECTOR_SENSITIVITY = "detector_sensitivity_ge_4mm"  # the validated_on figure a negative is stated with


def detector_sensitivity(cards) -> str:
    """How often the nodule detector with these models finds a nodule, as their cards'
    validated_on measured it, and that real CT is not validated: what an AI-only negative must
    be read with."""
    for card in cards:
        found = card.figure(DETECTOR_SENSITIVITY)
        if found is None:
            continue
        value, validation = found
        figures = validation.figures
        count = f" ({figures['detector_found_ge_4mm']})" if "detector_found_ge_4mm" in figures else ""
        low = figures.get("detector_sensitivity_95ci_low")
        ci = f", 95% CI {float(low):.0%}-100%" if isinstance(low, (int, float)) and float(value) == 1.0 else ""
        fp = figures.get("detector_false_positives_per_scan")
        fps = f", {fp:g} false positive(s) per scan" if isinstance(fp, (int, float)) else ""
        kind = "synthetic" if validation.kind == "synthetic" else "real"
        real = " and not validated on real CT" if validation.kind == "synthetic" else ""
        return (f"detector sensitivity {float(value):.0%}{count} for nodules >= 4 mm{ci}{fps}, measured on held-out "
                f"{kind} scans on {validation.date.isoformat()} ({card.id} {card.version}){real}")
    return "detector sensitivity not measured for these models"
