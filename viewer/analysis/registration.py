"""Registration of a follow-up CT to its prior: rigid, then affine within the lungs (SimpleITK).

Follow-ups do not share a Frame of Reference with their prior (the patient lies differently on
the table), so positions can only be compared after registration. The result maps points both
ways between the two studies' LPS frames, and says how well the two scans agree, so a follow-up
of another body region or of an unrelated scan is refused instead of mapped somewhere.

Method, all on copies resampled to REGISTRATION_SPACING_MM (speed; nodule centres need about a
millimetre, which sub-voxel optimisation of a 2.5 mm grid gives):
- intensities clipped to a lung window, so air, lung, vessels and pleura carry the contrast and
  bone does not dominate;
- rigid (Euler3D), Mattes mutual information over the body, at 4x and 2x coarser grids,
  initialised by the centroids of the two aerated lungs (robust to different fields of view);
- affine from the rigid result at 2x and full registration resolution, the metric restricted
  to the prior's lungs (dilated so the pleura counts), for breathing and posture differences;
- quality: lung overlap after mapping, the correlation of lung-window intensities in the
  prior's lungs and the affine's scale factors; too little overlap or correlation, or a
  stretch no rescanned chest shows, means no common body region, and registration fails.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from viewer.core.errors import RadSightError
from viewer.core.volume import Volume

Progress = Callable[[int, int, str], None]

REGISTRATION_SPACING_MM = 2.5
LUNG_WINDOW_HU = (-1000.0, 200.0)
AERATED_HU = -400.0            # below: air or aerated lung
BODY_HU = -500.0               # above: the patient's tissue (and the table)
MIN_LUNG_ML = 50.0             # less aerated lung than this inside the body: no chest in view
MASK_MARGIN_MM = 10.0          # the metric sees the pleura and chest wall around the lungs
MIN_OVERLAP = 0.8              # fraction of the smaller lung the other covers after mapping
MIN_CORRELATION = 0.6          # lung-window intensity correlation inside the prior's lungs
STRETCH_RANGE = (0.8, 1.25)    # plausible affine scale factors between two scans of one chest
SEED = 20250115                # metric sampling seed: the same inputs give the same result


class RegistrationError(RadSightError):
    """Two studies could not be brought into register; the message gives the numbers."""


@dataclass(frozen=True)
class Registration:
    """Maps LPS mm points between a prior (fixed) and a follow-up (moving) study.

    `transform` maps prior LPS to follow-up LPS (SimpleITK's fixed-to-moving convention), so
    `to_current` applies it and `to_prior` its inverse.
    """

    transform: sitk.Transform
    rigid: sitk.Transform | None = None
    metric: float | None = None            # final Mattes mutual information (more negative: better)
    lung_overlap: float | None = None      # fraction of the smaller lung covered by the other
    correlation: float | None = None       # lung-window intensity correlation after mapping
    seconds: float | None = None
    method: str = "rigid+affine"
    prior_study_uid: str | None = None
    current_study_uid: str | None = None
    _inverse: sitk.Transform = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            inverse = self.transform.GetInverse()
        except RuntimeError as exc:
            raise RegistrationError(f"the registration transform cannot be inverted ({exc}); "
                                    "it folds space, so the registration failed") from None
        object.__setattr__(self, "_inverse", inverse)

    @staticmethod
    def from_matrix(matrix_prior_to_current, *, prior_study_uid: str | None = None,
                    current_study_uid: str | None = None, method: str = "matrix") -> "Registration":
        """A registration from a known 4x4 LPS matrix (e.g. stored, or identity for a shared
        Frame of Reference)."""
        matrix = np.asarray(matrix_prior_to_current, dtype=np.float64)
        if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)) or not np.allclose(matrix[3], [0, 0, 0, 1]):
            raise RegistrationError(f"a registration matrix must be a finite 4x4 affine with last row "
                                    f"0 0 0 1; got {matrix.tolist()}")
        if abs(np.linalg.det(matrix[:3, :3])) < 1e-6:
            raise RegistrationError("the registration matrix is singular: it cannot map points back")
        transform = sitk.AffineTransform(3)
        transform.SetMatrix(matrix[:3, :3].ravel().tolist())
        transform.SetTranslation(matrix[:3, 3].tolist())
        return Registration(transform, method=method, prior_study_uid=prior_study_uid,
                            current_study_uid=current_study_uid)

    @staticmethod
    def identity(prior_study_uid: str | None = None, current_study_uid: str | None = None) -> "Registration":
        """For two studies in the same Frame of Reference."""
        return Registration.from_matrix(np.eye(4), prior_study_uid=prior_study_uid,
                                        current_study_uid=current_study_uid, method="identity")

    def to_current(self, points_lps) -> np.ndarray:
        """Prior LPS mm (N x 3 or 3) to follow-up LPS mm."""
        return _apply(self.transform, points_lps)

    def to_prior(self, points_lps) -> np.ndarray:
        """Follow-up LPS mm (N x 3 or 3) to prior LPS mm."""
        return _apply(self._inverse, points_lps)

    @property
    def matrix(self) -> np.ndarray:
        """4x4 prior-LPS to follow-up-LPS matrix (every transform used here is affine)."""
        origin = self.to_current(np.zeros(3))
        out = np.eye(4)
        out[:3, :3] = (self.to_current(np.eye(3)) - origin).T
        out[:3, 3] = origin
        return out

    def to_json(self) -> dict:
        def rounded(v, digits):
            return None if v is None else round(float(v), digits)

        rotation, _ = _polar(self.matrix[:3, :3])
        angle = math.degrees(math.acos(max(-1.0, min(1.0, (np.trace(rotation) - 1) / 2))))
        return {"method": self.method, "prior_study_uid": self.prior_study_uid,
                "current_study_uid": self.current_study_uid,
                "matrix_prior_to_current": np.round(self.matrix, 6).tolist(),
                "rotation_deg": round(angle, 3),
                "translation_mm": np.round(self.matrix[:3, 3], 3).tolist(),
                "metric": rounded(self.metric, 4), "lung_overlap": rounded(self.lung_overlap, 3),
                "correlation": rounded(self.correlation, 3), "seconds": rounded(self.seconds, 1)}


def register(fixed: Volume, moving: Volume, fixed_mask: Volume | None = None,
             progress: Progress | None = None) -> Registration:
    """Register the follow-up `moving` to its prior `fixed` (both CT in HU).

    `fixed_mask` is the prior's lung mask on its own grid (nonzero inside the lungs); without
    it the aerated lung is found by thresholding.
    """
    start = time.perf_counter()
    steps = 4

    def report(done: int, message: str) -> None:
        if progress is not None:
            progress(done, steps, message)

    report(0, "resampling both studies for registration")
    fixed_image = _downsampled(fixed)
    moving_image = _downsampled(moving)
    fixed_lung = _lung(fixed_image, "prior") if fixed_mask is None else _given_lung(fixed_mask, fixed_image)
    moving_lung = _lung(moving_image, "follow-up")
    fixed_window = _window(fixed_image)
    moving_window = _window(moving_image)

    report(1, "rigid registration")
    rigid = _initial_rigid(fixed_lung, moving_lung)
    rigid_method = _method(levels=(4, 2), iterations=200)
    rigid_method.SetMetricFixedMask(_dilated(_region(fixed_image), MASK_MARGIN_MM))
    rigid_method.SetInitialTransform(rigid, inPlace=True)
    _execute(rigid_method, fixed_window, moving_window, "rigid")

    report(2, "affine registration within the lungs")
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    affine_method = _method(levels=(2, 1), iterations=150)
    affine_method.SetMetricFixedMask(_dilated(fixed_lung, MASK_MARGIN_MM))
    affine_method.SetInitialTransform(affine, inPlace=True)
    metric = _execute(affine_method, fixed_window, moving_window, "affine")

    report(3, "checking the overlap of the lungs")
    overlap = _overlap(fixed_lung, moving_lung, affine)
    correlation = _correlation(fixed_window, moving_window, fixed_lung, affine)
    result = Registration(affine, rigid, metric, overlap, correlation, time.perf_counter() - start,
                          prior_study_uid=fixed.source.study_uid, current_study_uid=moving.source.study_uid)
    _check(result, fixed, moving)
    report(4, f"registered in {result.seconds:.1f} s")
    return result


def _check(result: Registration, fixed: Volume, moving: Volume) -> None:
    """Refuse a registration that found no common anatomy, with every figure that says so."""
    _, stretch = _polar(result.matrix[:3, :3])
    scales = np.linalg.eigvalsh(stretch)
    problems = []
    if result.lung_overlap < MIN_OVERLAP:
        problems.append(f"the lungs overlap by {result.lung_overlap:.0%} (need {MIN_OVERLAP:.0%})")
    if result.correlation < MIN_CORRELATION:
        problems.append(f"the lung-window intensities correlate by {result.correlation:.2f} "
                        f"(need {MIN_CORRELATION:.2f})")
    if scales.min() < STRETCH_RANGE[0] or scales.max() > STRETCH_RANGE[1]:
        problems.append(f"the fit scales by {scales.min():.3f}-{scales.max():.3f} (a chest rescanned "
                        f"stays within {STRETCH_RANGE[0]}-{STRETCH_RANGE[1]})")
    if problems:
        raise RegistrationError(
            f"the follow-up ({_name(moving)}) does not match its prior ({_name(fixed)}): after "
            f"registration {'; '.join(problems)}; the studies likely show different body regions "
            "or different patients")


def _name(volume: Volume) -> str:
    source = volume.source
    return source.path or (f"study {source.study_uid}" if source.study_uid else "unnamed volume")


def _apply(transform: sitk.Transform, points_lps) -> np.ndarray:
    points = np.asarray(points_lps, dtype=np.float64)
    if points.shape[-1:] != (3,) or points.ndim > 2:
        raise ValueError(f"points must be N x 3 or 3 LPS mm; got shape {points.shape}")
    flat = points.reshape(-1, 3)
    out = np.array([transform.TransformPoint(tuple(map(float, p))) for p in flat]).reshape(-1, 3)
    return out.reshape(points.shape)


def _polar(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation part of an affine matrix (polar decomposition through the SVD)."""
    u, s, vt = np.linalg.svd(matrix)
    return u @ vt, vt.T @ np.diag(s) @ vt


def _image(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(np.asarray(volume.voxels, dtype=np.float32))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction.ravel().tolist())
    return image


def _downsampled(volume: Volume) -> sitk.Image:
    """The volume smoothed and resampled to REGISTRATION_SPACING_MM (never finer than it was)."""
    if volume.voxels.size == 0 or min(volume.shape) < 2:
        raise RegistrationError(f"{_name(volume)} has shape {volume.shape}: too few voxels to register")
    image = _image(volume)
    spacing = np.maximum(np.array(image.GetSpacing()), REGISTRATION_SPACING_MM)
    sigma = np.sqrt(np.maximum(spacing**2 - np.array(image.GetSpacing())**2, 0.0)) / 2.0
    if np.any(sigma > 0):
        image = sitk.SmoothingRecursiveGaussian(image, [max(float(s), 1e-3) for s in sigma])
    size = np.array(image.GetSize()) * np.array(image.GetSpacing()) / spacing
    return sitk.Resample(image, [max(int(round(n)), 2) for n in size], sitk.Transform(),
                         sitk.sitkLinear, image.GetOrigin(), spacing.tolist(),
                         image.GetDirection(), -1000.0, sitk.sitkFloat32)


def _window(image: sitk.Image) -> sitk.Image:
    return sitk.Clamp(image, sitk.sitkFloat32, *LUNG_WINDOW_HU)


def _lung(image: sitk.Image, which: str) -> sitk.Image:
    """Aerated lung: air below AERATED_HU inside the body (air outside it and in holes of the
    body contour excluded), its large components."""
    hu = sitk.GetArrayViewFromImage(image)
    body = _body(hu)
    air = (hu < AERATED_HU) & body
    labels, n = ndimage.label(air)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    lung = np.zeros_like(air)
    if n:
        sizes = ndimage.sum_labels(air, labels, index=np.arange(1, n + 1)) * voxel_ml
        keep = np.flatnonzero(sizes >= max(MIN_LUNG_ML / 4, 0.02 * sizes.max())) + 1
        lung = np.isin(labels, keep)
    total = float(lung.sum()) * voxel_ml
    if total < MIN_LUNG_ML:
        raise RegistrationError(f"no lungs found in the {which}: {total:.0f} ml of aerated tissue "
                                f"(< {AERATED_HU:.0f} HU) inside the body, need {MIN_LUNG_ML:.0f} ml; "
                                "it is likely not a chest CT, or not in HU")
    return _like(lung, image)


def _body(hu: np.ndarray) -> np.ndarray:
    """The largest connected tissue component with its holes (lungs, airways) filled, slice by
    slice: air inside the contour is the patient's, air around it is the room's."""
    tissue = hu > BODY_HU
    labels, n = ndimage.label(tissue)
    if n == 0:
        return tissue
    sizes = ndimage.sum_labels(tissue, labels, index=np.arange(1, n + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def _given_lung(mask: Volume, like: sitk.Image) -> sitk.Image:
    image = _image(mask.with_voxels((np.asarray(mask.voxels) > 0).astype(np.float32)))
    resampled = sitk.Resample(image, like, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    lung = sitk.GetArrayViewFromImage(resampled) >= 0.5
    voxel_ml = float(np.prod(like.GetSpacing())) / 1000.0
    if lung.sum() * voxel_ml < MIN_LUNG_ML:
        raise RegistrationError(f"the prior's lung mask covers {lung.sum() * voxel_ml:.0f} ml on the "
                                f"prior's grid (need {MIN_LUNG_ML:.0f} ml); it is likely empty or on another grid")
    return _like(lung, like)


def _region(image: sitk.Image) -> sitk.Image:
    return _like(_body(sitk.GetArrayViewFromImage(image)), image)


def _like(mask: np.ndarray, like: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(like)
    return out


def _dilated(mask: sitk.Image, mm: float) -> sitk.Image:
    radius = [max(int(round(mm / s)), 1) for s in mask.GetSpacing()]
    return sitk.BinaryDilate(mask, radius, sitk.sitkBall)


def _centroid(mask: sitk.Image) -> np.ndarray:
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(mask)
    return np.array(stats.GetCentroid(1))


def _initial_rigid(fixed_lung: sitk.Image, moving_lung: sitk.Image) -> sitk.Euler3DTransform:
    centre = _centroid(fixed_lung)
    rigid = sitk.Euler3DTransform()
    rigid.SetCenter(centre.tolist())
    rigid.SetTranslation((_centroid(moving_lung) - centre).tolist())
    return rigid


def _method(levels: tuple[int, ...], iterations: int) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=48)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.1, SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                    numberOfIterations=iterations,
                                                    relaxationFactor=0.6,
                                                    gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(levels))
    method.SetSmoothingSigmasPerLevel([max(n - 1, 0) for n in levels])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return method


def _execute(method: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image, stage: str) -> float:
    try:
        method.Execute(fixed, moving)
    except RuntimeError as exc:
        message = " ".join(str(exc).split())[-300:]
        raise RegistrationError(f"{stage} registration failed: {message}; the studies likely "
                                "share too little anatomy") from None
    return float(method.GetMetricValue())


def _overlap(fixed_lung: sitk.Image, moving_lung: sitk.Image, transform: sitk.Transform) -> float:
    mapped = sitk.Resample(moving_lung, fixed_lung, transform, sitk.sitkNearestNeighbor, 0)
    fixed = sitk.GetArrayViewFromImage(fixed_lung) > 0
    warped = sitk.GetArrayViewFromImage(mapped) > 0
    voxel = float(np.prod(moving_lung.GetSpacing()))
    fixed_voxel = float(np.prod(fixed_lung.GetSpacing()))
    moving_volume = float((sitk.GetArrayViewFromImage(moving_lung) > 0).sum()) * voxel
    smaller = min(float(fixed.sum()) * fixed_voxel, moving_volume)
    # Nearest-neighbour resampling onto another grid can count a voxel or two twice: cap at 1.
    return min(float((fixed & warped).sum()) * fixed_voxel / smaller, 1.0) if smaller > 0 else 0.0


def _correlation(fixed: sitk.Image, moving: sitk.Image, fixed_lung: sitk.Image,
                 transform: sitk.Transform) -> float:
    """Pearson correlation of the windowed intensities over the prior's lungs (with their
    margin) where the follow-up has data."""
    domain = sitk.Image(moving.GetSize(), sitk.sitkUInt8) + 1
    domain.CopyInformation(moving)
    inside = sitk.Resample(domain, fixed, transform, sitk.sitkNearestNeighbor, 0)
    mapped = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, LUNG_WINDOW_HU[0], sitk.sitkFloat32)
    region = _dilated(fixed_lung, MASK_MARGIN_MM)
    select = (sitk.GetArrayViewFromImage(region) > 0) & (sitk.GetArrayViewFromImage(inside) > 0)
    if select.sum() < 100:
        return 0.0
    a = sitk.GetArrayViewFromImage(fixed)[select]
    b = sitk.GetArrayViewFromImage(mapped)[select]
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])
