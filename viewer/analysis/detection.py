"""AI-assisted nodule detection: candidates, false-positive reduction, and a measurement for each.

The search covers the lung region built from the CT itself (viewer.analysis.lung_region: each
lung closed over dents up to ~60 mm, so juxtapleural and hilar lesions stay in), joined with a
model's lung label when there is one. Masses (> 30 mm) are found whole in that region
(viewer.analysis.masses). Nodule candidates come from the segmentation model's nodule channel when
it has any, and from a blob detector (viewer.analysis.candidates) always, which finds what the
channel misses. Channel candidates come first, so a nodule both find is credited to the model. Each
candidate is then measured with `measure_at`, which refuses vessels, the chest wall and empty lung
with a reason; what it measures must be 3-60 mm across (above 30 mm it is reported as a mass),
mostly surrounded by lung or chest wall (a piece of the hilum or the diaphragm is not), about as
full as an ellipsoid, not a junction where three or more vessels meet, and not the same nodule
as an earlier detection. The bundled type classifier, when given, adds class probabilities and raises or
lowers the score.

Every Detection says which method found it, which models took part and how its score was made,
so a reader can judge an AI finding before accepting, editing or rejecting it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from viewer.analysis.candidates import Candidate, blob_candidates, channel_candidates, search_region
from viewer.analysis.grids import block_mean
from viewer.analysis.lung_region import lung_region
from viewer.analysis.masses import find_masses
from viewer.analysis.nodules import OPENING_FRACTIONS, MeasurementError, NoduleMeasurement, VesselError, measure_at
from viewer.core.errors import RadSightError
from viewer.core.results import Classification, Mask, ModelRef
from viewer.core.volume import Volume

METHOD_CHANNEL = "seg-model nodule channel"
METHOD_BLOB = "lung-mask blob detector"
METHOD_MASS = "lung-region mass finder"
MIN_DIAMETER_MM = 3.0
MAX_DIAMETER_MM = 30.0     # larger: a mass (Fleischner glossary)
MAX_MEASURED_MM = 60.0     # a blob measured up to this is a mass; larger ones viewer.analysis.masses finds whole
DENSE_HU = -700.0          # denser than aerated lung: what a nodule is made of (ground glass included)
MIN_INSCRIBED_MM = 0.8     # a >= 4 mm nodule has a core this far from lung (voxel centres); thinner = small vessel
MIN_AIR_CONTACT = 0.7      # share of a nodule's surroundings that is aerated lung or chest wall; the hilum has less
CONTACT_HU = -500.0        # lung around a nodule: below this. Not -700: a real scanner's blur puts the
                           # 1-2 mm shell of a nodule at -550 to -800 HU; soft tissue is above -100
MIN_LUNG_ML = 20.0         # less aerated lung than this: no lung in the field of view
MIN_FILL = 0.6             # volume / sphere of the mean diameter: a nodule is a (near) ellipsoid, a vessel fork is not
BRANCH_HU = -500.0         # a vessel leaving the nodule: denser than this where it crosses the shell around it
BRANCH_SECTION = 0.15      # a branch counts when its cross-section is at least this share of the nodule's
DETECTION_OPENINGS = OPENING_FRACTIONS[:1]  # wider openings separate fused vessels but also make blobs of them
MEASURE_THREADS = min(4, os.cpu_count() or 1)
PRESCREEN_CLEARANCE_MM = 6.0  # blob candidates this far from the pleura get a quick vessel check first
PRESCREEN_HALF_MM = 11.0   # on a region of +-11 mm (vessels that run on show within it)
MAX_BRANCHES = 2           # a vessel passing a nodule leaves on two sides; three or more: a vessel junction
SEG_MODEL_ID = "radsight-demo-lung-nodule-seg"
CLASSIFIER_ID = "radsight-demo-nodule-classifier"

Progress = Callable[[int, int, str], None]
Classifier = Callable[[Volume, tuple[float, float, float]], Classification]


class DetectionError(RadSightError):
    """Detection cannot run on this volume; the message says why and names the series."""


@dataclass(frozen=True)
class Detection:
    """One AI-detected nodule with its measurement and provenance."""

    measurement: NoduleMeasurement
    score: float                                  # confidence in [0, 1]; `score_basis` says how it was made
    method: str                                   # METHOD_CHANNEL or METHOD_BLOB
    models: tuple[ModelRef, ...]
    class_probabilities: dict[str, float] = field(default_factory=dict)  # solid / part-solid / ground-glass
    score_basis: str = ""
    side: str = ""                                # "right" or "left" lung (patient's side)

    def to_json(self) -> dict:
        return {**self.measurement.to_json(), "score": round(self.score, 3), "method": self.method,
                "score_basis": self.score_basis, "side": self.side,
                "models": [{"id": m.id, "version": m.version} for m in self.models],
                "class_probabilities": {k: round(v, 3) for k, v in self.class_probabilities.items()}}


def detect_nodules(volume: Volume, lung_mask: Volume | None = None, nodule_probability: Volume | None = None,
                   classifier: Classifier | None = None, progress: Progress | None = None,
                   cancelled: Callable[[], bool] | None = None, models: tuple[ModelRef, ...] = (),
                   seconds: dict[str, float] | None = None) -> list[Detection]:
    """Nodules in a CT volume (HU), highest score first.

    `lung_mask`: a model's lung label (nonzero = lung) on the study grid, or None. The search
    always covers the lung region built from the CT itself (viewer.analysis.lung_region), which
    keeps juxtapleural nodules and masses a model's lung label may leave out; a model's label
    adds to it. `nodule_probability`: a model's nodule probability on the study grid, if any.
    `classifier(volume, point_lps) -> Classification` scores each nodule's type. `models`: the
    models behind the masks, recorded in every detection. `cancelled()` is checked between
    candidates; when it returns True detection stops and returns what it has. `seconds`, when
    given, receives the wall-clock seconds of each stage (for `radsight bench detection`).
    """
    _check_ct(volume)
    stage = _Stages(seconds)
    for name, other in (("lung mask", lung_mask), ("nodule probability", nodule_probability)):
        if other is not None and other.shape != volume.shape:
            raise DetectionError(f"the {name} has shape {other.shape} (z, y, x) but the CT volume "
                                 f"{_name(volume)} has {volume.shape}: it belongs to another series")
    say = progress or (lambda done, total, message: None)
    stop = cancelled or (lambda: False)
    say(0, 1, "finding the lungs' search region")
    with stage("lung region"):
        lungs = lung_region(volume)
    model_lung = lung_mask is not None and np.any(lung_mask.voxels)
    if lungs.air_ml < MIN_LUNG_ML and not model_lung:
        raise DetectionError(f"no lung found in {_name(volume)}: {lungs.air_ml:.0f} mL of aerated lung "
                             "(is this a chest CT? is the lung in the field of view?)")
    say(0, 1, "looking for masses and candidates")
    with ThreadPoolExecutor(1) as background:
        # The masses and the depth map run beside the blob filter, whose steps other than the
        # Gaussian passes (two threads) run on one core.
        def masses() -> list[NoduleMeasurement]:
            with stage("masses"):
                return find_masses(volume, lungs)

        found_masses = background.submit(masses)
        # Depth from the pleura: not the region's closed dents, nor a label's margin.
        depth = background.submit(_depth, lungs.lung, volume)
        with stage("model lung label"):
            region = lungs.region | search_region(lung_mask.voxels, volume) if model_lung else lungs.region
        candidates: list[Candidate] = []
        with stage("candidates"):
            if nodule_probability is not None:
                candidates += channel_candidates(nodule_probability)
            candidates += [c for c in blob_candidates(volume, region, say, stop) if _thick_enough(volume, c.point_lps)]
        detections: list[Detection] = [_mass_detection(volume, m, models) for m in found_masses.result()]
        depth = depth.result()
    if classifier is not None:
        classifier = stage.timed("type classifier", classifier)
    with stage("measurement and checks"):  # the type classifier's share is also its own stage
        for n, (candidate, m) in enumerate(_measured(volume, candidates, region, depth, stop)):
            if stop():
                break
            say(n, len(candidates), f"measuring candidate {n + 1} of {len(candidates)}")
            if m is None or any(_inside(d.measurement, candidate.point_lps) for d in detections):
                continue
            if not MIN_DIAMETER_MM <= m.mean_diameter_mm <= MAX_MEASURED_MM:
                continue
            if m.mean_diameter_mm > MAX_DIAMETER_MM:
                m = replace(m, kind="mass")
            if _air_contact(volume, m, region) < MIN_AIR_CONTACT or _fill(m) < MIN_FILL:
                continue
            if _branches(volume, m) > MAX_BRANCHES:
                continue
            if any(_same_nodule(d.measurement, m) for d in detections):
                continue
            detections.append(_detection(volume, candidate, m, classifier, models))
    say(len(candidates), len(candidates), f"{len(detections)} nodules detected")
    detections = [replace(d, side="right" if d.measurement.centre_lps_mm[0] < lungs.midline_x_mm else "left")
                  for d in detections]
    return sorted(detections, key=lambda d: -d.score)


def detect_in_study(volume: Volume, provider: str | None = None, progress: Progress | None = None,
                    cancelled: Callable[[], bool] | None = None, registry=None, mask: Mask | None = None,
                    seconds: dict[str, float] | None = None) -> list[Detection]:
    """Detection with the bundled models: the segmentation model's lung channel (and its nodule
    channel, when it yields any) and the type classifier for the scores. `mask`: that model's
    segmentation of this volume when it has already run (e.g. read back from this run's SEG).
    `seconds`: as detect_nodules', with the model's run when it runs here."""
    from viewer.inference.registry import discover
    from viewer.inference.run import classify, segment

    _check_ct(volume)
    registry = registry or discover()
    classifier_card = registry.get(CLASSIFIER_ID)
    stage = _Stages(seconds)
    if mask is None:
        with stage("segmentation model"):
            mask = segment(volume, registry.get(SEG_MODEL_ID), provider=provider, progress=progress,
                           cancelled=cancelled)
    t0 = time.perf_counter()
    lung_value = next((i.value for i in mask.label_info if i.name.lower() == "lung"), None)
    if lung_value is None:
        raise DetectionError(f"the segmentation by {mask.model} has no 'Lung' label "
                             f"(labels: {', '.join(i.name for i in mask.label_info)}): no lung to search")
    nodule_value = next((i.value for i in mask.label_info if "nodule" in i.name.lower()), None)
    labels = mask.labels.voxels
    # In place and without astype copies: each study-sized temporary costs ~0.5 s on 512x512x255.
    is_lung = labels == lung_value
    is_nodule = labels == nodule_value if nodule_value is not None else None
    if is_nodule is not None:
        is_lung |= is_nodule
    lung = mask.labels.with_voxels(is_lung.view(np.uint8))  # bool is one byte of 0 or 1
    probability = None
    if is_nodule is not None and is_nodule.any() and mask.confidence is not None:
        # The argmax label's confidence is the nodule probability where the label is nodule.
        nodule_probability = np.zeros(labels.shape, np.float32)
        np.copyto(nodule_probability, mask.confidence.voxels, where=is_nodule, casting="same_kind")
        probability = mask.labels.with_voxels(nodule_probability, unit="1")

    def classifier(vol: Volume, point) -> Classification:
        return classify(vol, classifier_card, point, provider=provider)

    stage._add("model masks", t0)
    return detect_nodules(volume, lung, probability, classifier, progress, cancelled,
                          models=(mask.model, classifier_card.ref), seconds=seconds)


class _Stages:
    """Wall-clock seconds per named stage, summed into a caller's dict (nothing when None)."""

    def __init__(self, seconds: dict[str, float] | None):
        self.seconds = seconds

    def _add(self, name: str, t0: float) -> None:
        if self.seconds is not None:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._add(name, t0)

    def timed(self, name: str, fn: Callable) -> Callable:
        def call(*args, **kwargs):
            with self(name):
                return fn(*args, **kwargs)
        return call


def _check_ct(volume: Volume) -> None:
    modality = volume.source.modality
    if modality not in ("CT", None, ""):
        raise DetectionError(f"nodule detection needs a CT series in Hounsfield units; {_name(volume)} is "
                             f"{modality}. Open the chest CT of this study instead")


def _name(volume: Volume) -> str:
    source = volume.source
    if source.path:
        return f"series {source.series_number or ''} ({source.path})".replace("  ", " ")
    return f"series {source.series_uid or '(unnamed)'}"


def _detection(volume: Volume, candidate: Candidate, m: NoduleMeasurement, classifier: Classifier | None,
               models: tuple[ModelRef, ...]) -> Detection:
    if candidate.source == "channel":
        method, score = METHOD_CHANNEL, candidate.response
        basis = "mean nodule probability of the segmentation model's component"
    else:
        method, score = METHOD_BLOB, candidate.shape
        basis = ("Hessian isotropy at the blob's scale (weakest / strongest curvature: 1 = sphere, "
                 "0 = tube)")
    probabilities: dict[str, float] = {}
    if classifier is not None:
        result = classifier(volume, m.centre_lps_mm)
        probabilities = {_type_name(c.name): float(p) for c, p in zip(result.classes, result.probabilities)}
        agreement = probabilities.get(m.type, 0.0)
        score = 0.5 * (score + agreement)
        basis += f"; averaged with {result.model}'s probability of the measured type ({m.type})"
        if result.model not in models:
            models = models + (result.model,)
    if candidate.source == "blob" and not models:
        basis += "; no model took part (threshold lung mask)"
    return Detection(m, float(np.clip(score, 0.0, 1.0)), method, tuple(models), probabilities, basis)


def _type_name(class_name: str) -> str:
    """'Ground-glass nodule' -> 'ground-glass', matching NoduleMeasurement.type."""
    name = class_name.lower().replace(" nodule", "").strip()
    return name.replace(" ", "-")


def _mask_points(m: NoduleMeasurement) -> np.ndarray:
    k, j, i = np.nonzero(m.mask.voxels)
    return m.mask.index_to_lps(np.stack([i, j, k], axis=1))


def _inside(m: NoduleMeasurement, point) -> bool:
    """Whether a point (LPS mm) falls in a measured nodule's mask: measuring it again is redundant."""
    ijk = np.rint(m.mask.lps_to_index(point)).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.array(m.mask.shape[::-1])):
        return False
    return bool(m.mask.voxels[ijk[2], ijk[1], ijk[0]])


def _same_nodule(a: NoduleMeasurement, b: NoduleMeasurement) -> bool:
    """Two measurements of one nodule: centres within half the smaller radius, or either centre
    inside the other's mask."""
    distance = float(np.linalg.norm(np.subtract(a.centre_lps_mm, b.centre_lps_mm)))
    radius = 0.25 * min(a.mean_diameter_mm, b.mean_diameter_mm)
    return distance <= max(radius, 1.0) or _inside(a, b.centre_lps_mm) or _inside(b, a.centre_lps_mm)


def _measure(volume: Volume, point, lung: np.ndarray) -> NoduleMeasurement | None:
    """measure_at from the candidate's point and, when that is refused near the pleura, again 1
    and 2 mm further into the lung: a blob detector's peak on a juxtapleural nodule can sit
    towards the wall, where measure_at sees the wall and the nodule as one structure."""
    try:
        return measure_at(volume, point, DETECTION_OPENINGS)
    except MeasurementError:
        pass
    inward = _inward(volume, point, lung)
    for step_mm in (1.0, 2.0) if inward is not None else ():
        try:
            return measure_at(volume, np.asarray(point, float) + step_mm * inward, DETECTION_OPENINGS)
        except MeasurementError:
            continue
    return None


def _measured(volume: Volume, candidates: list[Candidate], region: np.ndarray, depth, stop: Callable[[], bool]):
    """(candidate, its measurement or None) in the candidates' order, measured MEASURE_THREADS at
    a time: measurement is most of detection's time, and SimpleITK and NumPy release the GIL in
    it (two threads measured 1.5x faster than one on 2 cores). The caller's filters then run in
    order on the results, so what is detected does not depend on the threads."""
    def work(candidate: Candidate) -> NoduleMeasurement | None:
        if stop() or (candidate.source == "blob" and _vessel_at(volume, candidate, depth)):
            return None
        return _measure(volume, candidate.point_lps, region)

    with ThreadPoolExecutor(MEASURE_THREADS) as pool:
        yield from zip(candidates, pool.map(work, candidates))


def _depth(region: np.ndarray, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Depth (mm) of each ~3 mm block inside the region, and the block size (z, y, x)."""
    spacing = np.array(volume.spacing)[::-1]
    factor = np.maximum(np.floor(3.0 / spacing), 1).astype(int)
    coarse = block_mean(region.astype(np.float32), factor) > 0.5
    return ndimage.distance_transform_edt(coarse, sampling=spacing * factor), factor


def _vessel_at(volume: Volume, candidate: Candidate, depth: tuple[np.ndarray, np.ndarray]) -> bool:
    """A quick look for a vessel at a blob candidate deep in the lung, on a small region (a tenth
    of measure_at's usual voxels): most blob candidates are vessels, and this spares them the full
    measurement. Only candidates whose blob (radius ~ sigma * sqrt(3)) stays PRESCREEN_CLEARANCE_MM
    clear of the pleura (the lung closed only over vessels and small nodules, LungRegion.lung): for those the wall does not take part, while at the pleura the
    measurement's rolling ball over the wall, which the small region would not hold, decides
    between a juxtapleural nodule and the wall. A nodule wider than the small region is never
    called a vessel there (its reach covers the whole region), so the check can only be
    conservative."""
    grid, factor = depth
    k, j, i = np.clip((np.rint(volume.lps_to_index(candidate.point_lps)[::-1]) // factor).astype(int), 0,
                      np.array(grid.shape) - 1)
    if grid[k, j, i] <= candidate.scale_mm * np.sqrt(3.0) + PRESCREEN_CLEARANCE_MM:
        return False
    try:
        measure_at(volume, candidate.point_lps, DETECTION_OPENINGS, half_mm=PRESCREEN_HALF_MM)
    except VesselError:
        return True
    except MeasurementError:
        return False
    return False


def _inward(volume: Volume, point, lung: np.ndarray, reach_mm: float = 8.0) -> np.ndarray | None:
    """Unit LPS direction from the point into the lung, away from its nearest boundary; None when
    the boundary is farther than reach_mm (no pleura nearby: not a juxtapleural case)."""
    spacing = np.array(volume.spacing)[::-1]
    centre = np.rint(volume.lps_to_index(point)[::-1]).astype(int)
    reach = np.ceil((reach_mm + 2.0) / spacing).astype(int)
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, volume.shape)
    patch = lung[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] > 0
    c = tuple(np.clip(centre - lo, 0, np.array(patch.shape) - 1))
    if not patch[c] or patch.all():
        return None
    depth = ndimage.distance_transform_edt(patch, sampling=spacing)
    if depth[c] > reach_mm:
        return None
    gradient = np.array([g[c] for g in np.gradient(depth, *spacing)])  # per mm along k, j, i
    if np.linalg.norm(gradient) < 1e-6:
        return None
    lps = volume.direction @ gradient[::-1]
    return lps / np.linalg.norm(lps)


def _dense_patch(volume: Volume, point, reach_mm: float = 6.0):
    """Dense (> DENSE_HU) voxels in a box of +-reach_mm around the point, its (k, j, i) start and
    the (z, y, x) spacing; (None, ...) when nothing there is dense."""
    spacing = np.array(volume.spacing)[::-1]
    centre = np.rint(volume.lps_to_index(point)[::-1]).astype(int)
    reach = np.ceil(reach_mm / spacing).astype(int)
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, volume.shape)
    patch = volume.voxels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] > DENSE_HU
    return (patch if patch.any() else None), lo, spacing


def _thick_enough(volume: Volume, point) -> bool:
    """Dense tissue at least MIN_INSCRIBED_MM deep within 2 mm of the point: the core of a nodule
    of 4 mm or more; small vessels are thinner. A cheap test that spares most vessel candidates a
    full measurement. Exact Euclidean distance on a small patch (reach 6 mm) suffices because only
    distances up to the threshold matter."""
    patch, lo, spacing = _dense_patch(volume, point)
    if patch is None:
        return False
    depth = ndimage.distance_transform_edt(patch, sampling=spacing)
    near = np.ceil(2.0 / spacing).astype(int)
    c = np.rint(volume.lps_to_index(point)[::-1]).astype(int) - lo
    window = depth[max(c[0] - near[0], 0):c[0] + near[0] + 1, max(c[1] - near[1], 0):c[1] + near[1] + 1,
                   max(c[2] - near[2], 0):c[2] + near[2] + 1]
    # scipy measures to the nearest background voxel centre; nodules.py's maps measure between
    # boundary voxel centres, a voxel less: the threshold is stated in the latter.
    return bool(window.size and window.max() - float(min(spacing)) >= MIN_INSCRIBED_MM)


def _fill(m: NoduleMeasurement) -> float:
    """Volume over that of the sphere with the mean axial diameter: about 1 for an ellipsoid
    (0.6 for one flattened 1.7:1 along z); a fork of vessels or a wedge at the diaphragm, whose
    largest section is much wider than its body, fills less."""
    return m.volume_mm3 / (np.pi / 6 * m.mean_diameter_mm ** 3)


def _branches(volume: Volume, m: NoduleMeasurement) -> int:
    """How many vessel-calibre structures leave the measured blob: dense components crossing the
    shell 1.5-3.5 mm outside it whose cross-section (shell volume / 2 mm) is at least
    BRANCH_SECTION of the blob's own axial section. Where vessels branch, the junction is a
    compact blob that measure_at accepts; three or more vessels as thick as it leave a junction,
    while a nodule beside a vessel has at most the vessel's two ends (and the chest wall, for a
    juxtapleural nodule, is one wide structure)."""
    mask = m.mask.voxels > 0
    spacing = np.array(m.mask.spacing)[::-1]
    hu = _hu_under(volume, m)
    if hu is None:
        return 0
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    crossing = (outside > 1.5) & (outside <= 3.5) & (hu > BRANCH_HU)
    labels, n = ndimage.label(crossing)
    if n == 0:
        return 0
    sections = np.bincount(labels.ravel())[1:] * float(np.prod(spacing)) / 2.0
    return int(np.sum(sections >= BRANCH_SECTION * np.pi * (m.mean_diameter_mm / 2) ** 2))


def _hu_under(volume: Volume, m: NoduleMeasurement) -> np.ndarray | None:
    """The study's HU on the measurement mask's sub-grid (None if it does not fit the study)."""
    start = np.rint(volume.lps_to_index(m.mask.index_to_lps([0, 0, 0]))).astype(int)[::-1]
    if np.any(start < 0):
        return None
    hu = _under(volume.voxels, volume, m)
    return hu if hu.shape == m.mask.shape else None


def _air_contact(volume: Volume, m: NoduleMeasurement, region: np.ndarray) -> float:
    """Share of the shell 1-2 mm outside the nodule that is aerated lung or lies outside the lung
    region (the chest wall under a juxtapleural nodule). A nodule lies in lung, free or on the
    pleura; a piece of the hilum, the mediastinum or the diaphragm that measured as a blob is
    wrapped in soft tissue that the region's closing took in."""
    mask = m.mask.voxels > 0
    spacing = np.array(m.mask.spacing)[::-1]
    outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
    shell = (outside > 1.0) & (outside <= 2.0 + float(max(spacing)) / 2)
    hu = _hu_under(volume, m)
    if hu is None or not shell.any():
        return 1.0
    within = _under(region, volume, m)
    return float(np.mean((hu[shell] < CONTACT_HU) | ~within[shell]))


def _under(array: np.ndarray, volume: Volume, m: NoduleMeasurement) -> np.ndarray:
    """A study-grid array on the measurement mask's sub-grid (the caller has checked it fits)."""
    start = np.rint(volume.lps_to_index(m.mask.index_to_lps([0, 0, 0]))).astype(int)[::-1]
    nz, ny, nx = m.mask.shape
    return array[start[0]:start[0] + nz, start[1]:start[1] + ny, start[2]:start[2] + nx]


def _mass_detection(volume: Volume, m: NoduleMeasurement, models: tuple[ModelRef, ...]) -> Detection:
    """A mass from viewer.analysis.masses. The region and the mass finder are HU rules, so the
    score says how clearly it is a mass (its mean diameter against 60 mm); `models` are those of
    the detection run it belongs to (the type classifier's 32 mm crop cannot judge a mass)."""
    score = float(np.clip(m.mean_diameter_mm / 60.0, 0.5, 1.0))
    basis = ("solid lesion > 30 mm in the CT-derived lung region; score = mean diameter / 60 mm "
             "(0.5 at 30 mm, 1 from 60 mm); found by HU rules, not by a model")
    return Detection(m, score, METHOD_MASS, tuple(models), {}, basis)
