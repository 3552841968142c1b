"""Semi-automatic measurement of a lung nodule at a point: 3-D segmentation that separates it from
vessels and the chest wall, partial-volume-aware volume, axial diameters as Lung-RADS defines
them, attenuation and type.

Method (all in millimetres, so anisotropic grids behave the same):
- the local lung background (median HU of aerated voxels around the point) and a low threshold
  150 HU above it find everything denser than lung near the point;
- the chest wall is cut off by closing the aerated lung with a ball wider than the nodule
  (a rolling ball over the pleura): the nodule is a dent in the lung, the wall is not;
- vessels are cut off by a morphological opening whose radius follows the nodule's own
  inscribed radius, so only structures thinner than the nodule are removed;
- the nodule's level L is the median HU inside it, and its surface is where the attenuation is
  halfway between lung and L (50% occupancy), which makes diameters unbiased for solid and
  ground-glass nodules alike;
- the volume counts interior voxels whole and boundary voxels by their occupancy
  (HU - lung) / (L - lung), so it does not depend on where the threshold cut the partial volume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import SimpleITK as sitk
from scipy.spatial import ConvexHull

from viewer.analysis.grids import bounding_box
from viewer.core.errors import RadSightError
from viewer.core.volume import Volume

AERATED_HU = -700.0      # below: aerated lung
SOLID_HU = -300.0        # above: solid tissue (the solid part of a part-solid nodule)
LOW_MARGIN_HU = 150.0    # the low threshold above the lung background
SEARCH_MM = 3.0          # how far from the click the nodule's densest point may be
MAX_ROI_MM = 60.0        # half-size of the largest region examined
OPENING_FRACTIONS = (0.75, 0.9, 1.0)  # vessels thinner than this fraction of the nodule's inscribed radius are cut off
REACH = 2.2              # nodules are compact: nothing farther than this many inscribed radii from the seed
TUBE_FRACTION = 0.5      # more of the opened structure beyond REACH than this (relative): a vessel
MAX_ELONGATION = 2.2     # principal-axis ratio: nodules are ellipsoids (< ~1.6), a vessel piece is ~2.5+
WALL_BALL_MM = 20.0      # rolling-ball radius over the pleura: dents up to ~40 mm wide stay on the lung side
LUNG_AIR_MM = 15.0       # air components reaching this close to the click are the lung around it


class MeasurementError(RadSightError):
    """No nodule can be measured at this point; the message says why."""


@dataclass(frozen=True)
class NoduleMeasurement:
    centre_lps_mm: tuple[float, float, float]
    volume_mm3: float
    long_axis_mm: float
    short_axis_mm: float
    mean_diameter_mm: float
    mean_hu: float
    max_hu: float
    type: str
    solid_mean_diameter_mm: float | None
    juxtapleural: bool
    mask: Volume  # the nodule's voxels on a sub-grid of the study (uint8), for display and editing
    kind: str = "nodule"  # "mass" when larger than 30 mm (Fleischner glossary: a mass is > 3 cm)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("mask")
        data["centre_lps_mm"] = [round(v, 2) for v in self.centre_lps_mm]
        for key in ("volume_mm3", "long_axis_mm", "short_axis_mm", "mean_hu", "max_hu"):
            data[key] = round(data[key], 1)
        return data


class VesselError(MeasurementError):
    """The structure at the point is a vessel (it runs on, or is elongated), not a nodule."""


def measure_at(volume: Volume, point_lps, openings: tuple[float, ...] = OPENING_FRACTIONS,
               half_mm: float = 25.0) -> NoduleMeasurement:
    """Measure the nodule at `point_lps` (LPS mm) of a CT volume in HU.

    `openings`: the vessel-cutting openings to try, as fractions of the nodule's inscribed radius.
    A reader's click says a nodule is there, so all are tried and a nodule fused with a vessel
    nearly as thick as itself is still separated; automatic detection passes the first only,
    since wider openings also turn pieces of vessels into blobs. `half_mm`: half-size of the first
    region examined (it grows while the structure reaches its border)."""
    if volume.source.modality not in ("CT", None, ""):
        raise MeasurementError(f"nodule measurement needs CT in HU; this series is {volume.source.modality}")
    point = np.asarray(point_lps, float)
    ijk = volume.lps_to_index(point)
    if np.any(ijk < -0.5) or np.any(ijk > np.array(volume.shape[::-1]) - 0.5):
        raise MeasurementError(f"the point {tuple(np.round(point, 1))} mm is outside the volume")
    half = half_mm
    while True:
        roi = _roi(volume, point, half)
        try:
            return _measure(roi, point, openings)
        except _TouchesBorder:
            if half >= MAX_ROI_MM:
                raise MeasurementError("the structure at this point is larger than a nodule "
                                       f"(it reaches {2 * MAX_ROI_MM:.0f} mm across)") from None
            half = min(half * 1.6, MAX_ROI_MM)


def remeasure(volume: Volume, mask: Volume) -> NoduleMeasurement:
    """The numbers of a nodule whose contour the reader corrected (painted or erased).

    `mask` is the edited nodule on a sub-grid of `volume` (as NoduleMeasurement.mask is). The
    contour is taken as drawn: no threshold or vessel cut is applied again, but the volume still
    counts the drawn boundary voxels by their occupancy, so it stays comparable with measure_at.
    """
    if not np.allclose(mask.spacing, volume.spacing, atol=1e-4) or not np.allclose(mask.direction, volume.direction, atol=1e-5):
        raise MeasurementError(f"the edited mask's grid (spacing {tuple(round(s, 3) for s in mask.spacing)} mm) "
                               f"is not a sub-grid of the study (spacing {tuple(round(s, 3) for s in volume.spacing)} mm)")
    start = volume.lps_to_index(mask.affine[:3, 3])
    if np.abs(start - np.rint(start)).max() > 1e-3:
        raise MeasurementError("the edited mask is not aligned with the study's voxels")
    lo = np.rint(start).astype(int)
    hi = lo + np.array(mask.shape[::-1])
    if np.any(lo < 0) or np.any(hi > np.array(volume.shape[::-1])):
        raise MeasurementError("the edited mask reaches outside the study")
    nodule = mask.voxels > 0
    if not nodule.any():
        raise MeasurementError("the edited contour is empty: nothing is left to measure")
    hu = volume.voxels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
    roi = mask.with_voxels(hu, unit=volume.unit)
    aerated = hu < AERATED_HU
    if not aerated.any():
        raise MeasurementError("no aerated lung around the edited contour: it is not a lung nodule")
    background = float(np.median(hu[aerated]))
    dense = hu > background + LOW_MARGIN_HU
    distance = _distance_from(np.argwhere(nodule).mean(axis=0), hu.shape, np.array(roi.spacing)[::-1])
    lung = _fill_holes(_close(_air_near(~dense, distance), WALL_BALL_MM, roi))
    return _numbers(roi, hu, nodule, nodule, background, _level(hu, nodule, roi), lung, dense)


def measurement_of(roi: Volume, lesion: np.ndarray, lung: np.ndarray, kind: str = "nodule") -> NoduleMeasurement:
    """The numbers of a lesion already delineated on `roi` (a sub-grid of the study in HU):
    `lesion` its voxels, `lung` the lung region there (for the juxtapleural flag). Used for masses,
    which are found as a whole rather than grown from a click."""
    hu = roi.voxels.astype(np.float32)
    aerated = (hu < AERATED_HU) & ~lesion
    background = float(np.median(hu[aerated])) if aerated.any() else -850.0
    dense = hu > background + LOW_MARGIN_HU
    m = _numbers(roi, hu, lesion, lesion, background, _level(hu, lesion, roi), lung | lesion, dense)
    return m if kind == "nodule" else replace(m, kind=kind)


class _TouchesBorder(Exception):
    pass


def _roi(volume: Volume, point: np.ndarray, half_mm: float) -> Volume:
    spacing = np.array(volume.spacing)
    centre = np.rint(volume.lps_to_index(point)).astype(int)
    reach = np.ceil(half_mm / spacing).astype(int)
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, np.array(volume.shape[::-1]))
    voxels = volume.voxels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]].astype(np.float32)
    affine = np.array(volume.affine)
    affine[:3, 3] = volume.index_to_lps(lo)
    return Volume(voxels, affine, volume.frame_of_reference_uid, volume.source, unit=volume.unit)


def _image(mask: np.ndarray, like: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(like.spacing)
    return image


def _radius(mm: float, like: Volume) -> list[int]:
    return [max(int(round(mm / s)), 1) for s in like.spacing]


def _measure(roi: Volume, point: np.ndarray, openings: tuple[float, ...]) -> NoduleMeasurement:
    hu = roi.voxels
    spacing = np.array(roi.spacing)  # x, y, z
    zyx_spacing = spacing[::-1]
    seed_ijk = roi.lps_to_index(point)[::-1]  # (k, j, i), continuous
    distance = _distance_from(seed_ijk, hu.shape, zyx_spacing)

    aerated = hu < AERATED_HU
    if aerated.mean() < 0.15:
        raise MeasurementError("the point is not in aerated lung (no lung parenchyma around it)")
    background = float(np.median(hu[aerated & (distance < 20.0)])) if np.any(aerated & (distance < 20.0)) \
        else float(np.median(hu[aerated]))
    low = background + LOW_MARGIN_HU
    near = distance <= SEARCH_MM
    if not np.any(hu[near] > low):
        raise MeasurementError(f"no nodule at this point: nothing denser than lung within {SEARCH_MM:g} mm")
    dense = hu > low
    # Chest wall: close the aerated lung with a ball wider than a nodule (a rolling ball over the
    # pleura); a juxtapleural nodule is a dent in the lung and becomes lung, the wall does not.
    # Only the lung's own air counts: air outside the body (beyond the chest wall) would let the
    # ball close over the wall.
    lung = _fill_holes(_close(_air_near(~dense, distance), WALL_BALL_MM, roi))
    inside = dense & lung
    seed = _nearest(inside & near, hu, distance)
    if seed is None:
        raise MeasurementError("the point lies in the chest wall or mediastinum, not in a nodule in the lung")
    # Vessels: an opening thinner than the nodule removes them; keep what is connected to the seed.
    # A vessel nearly as thick as the nodule survives the first opening; a wider one (up to the
    # nodule's own inscribed radius) is tried before the structure is called a vessel.
    depth = _distance(inside, roi)  # the inscribed radius, the openings' erosions and the surface all read it
    inscribed = _inscribed_radius(depth, seed, roi)
    for fraction in openings:
        within = _opened_core(inside, depth, seed, distance, roi, max(fraction * inscribed, min(spacing)), inscribed)
        if within is not None:
            break
    else:
        raise VesselError("the structure at this point runs on beyond a nodule's size, like a vessel; "
                               "if a nodule touches a vessel as thick as itself, measure it by hand")
    core = _component_at(within, seed, distance)
    level = _level(hu, core, roi)
    # The opening rounds the surface off; give back the surface voxels (at most a voxel from lung)
    # within a voxel and a half of it, but not the inside of a vessel that touches it.
    surface = depth <= max(spacing) + 1e-6
    core = _component_at(core | (_dilate(core, 1.5 * max(spacing), roi) & inside & surface), seed, distance)
    half = background + 0.5 * (level - background)
    nodule = _component_at(core & (hu > half), seed, distance)
    if nodule is None or not nodule.any():
        raise MeasurementError("no nodule at this point")
    if any(np.any(np.take(nodule, [0, -1], axis=a)) for a in range(3)):
        raise _TouchesBorder()
    elongation = _elongation(nodule, spacing)
    if elongation > MAX_ELONGATION:
        raise VesselError(f"the structure at this point is elongated ({elongation:.1f}:1) like a vessel, "
                               "not a nodule; click the centre of a nodule")
    return _numbers(roi, hu, nodule, core, background, level, lung, dense)


def _opened_core(inside: np.ndarray, depth: np.ndarray, seed, distance: np.ndarray, roi: Volume,
                 opening: float, inscribed: float) -> np.ndarray | None:
    """The seed's structure after an opening of `opening` mm, cut to REACH inscribed radii; None
    when too much of it runs on beyond that (a vessel, not a nodule). `depth`: _distance(inside)."""
    spacing = np.array(roi.spacing)
    # The dilation back reaches one voxel further than the erosion: the distance map measures from
    # boundary voxel centres, half a voxel inside the surface, on both steps.
    eroded = depth >= opening - 1e-6  # _erode(inside, opening, roi) from the map already made
    core = _component_at(_dilate(eroded, opening + max(spacing), roi) & inside, seed, distance) if eroded.any() else None
    if core is None:
        core = _component_at(inside, seed, distance)
    within = core & (distance <= REACH * inscribed + max(spacing))
    if (core & ~within).sum() > TUBE_FRACTION * within.sum():
        return None
    return within


def _distance_from(point_kji: np.ndarray, shape: tuple[int, ...], spacing_zyx: np.ndarray) -> np.ndarray:
    """Distance (mm) of every voxel from a point (k, j, i), by broadcasting the three axes: the
    same sums as the norm of a full index grid, without building that grid."""
    k, j, i = (((np.arange(n) - p) * s) ** 2 for n, p, s in zip(shape, point_kji, spacing_zyx))
    return np.sqrt(k[:, None, None] + j[None, :, None] + i[None, None, :])


def _elongation(mask: np.ndarray, spacing: np.ndarray) -> float:
    """Ratio of the longest to the shortest principal axis (mm) of the mask's voxels."""
    points = np.argwhere(mask) * spacing[::-1]
    if len(points) < 4:
        return 1.0
    eig = np.linalg.eigvalsh(np.cov(points.T))
    return float(np.sqrt(max(eig[-1], 1e-9) / max(eig[0], (min(spacing) ** 2) / 12)))


def _level(hu: np.ndarray, core: np.ndarray, roi: Volume) -> float:
    """The nodule's own attenuation: the median of its interior (one voxel in from the surface,
    clear of partial volume); for nodules too small to have an interior, the mean of its four
    densest voxels (its centre, where partial volume has not reached)."""
    interior = sitk.GetArrayFromImage(sitk.BinaryErode(_image(core, roi), [1, 1, 1], sitk.sitkBall)) > 0
    if interior.sum() >= 27:
        return float(np.median(hu[interior]))
    return float(np.sort(hu[core])[-4:].mean())


def _distance(mask: np.ndarray, roi: Volume) -> np.ndarray:
    """Signed Euclidean distance (mm) to the mask's surface, positive inside: morphology with a
    ball of any radius in millimetres is a threshold of it, in linear time. On one ITK thread: a
    region this size gains little from more, and detection measures its candidates on parallel
    threads (the COVID scan's candidates: 13.5 -> 11 s on 2 cores, the same maps)."""
    distance = sitk.SignedMaurerDistanceMapImageFilter()
    distance.InsideIsPositiveOn()
    distance.SquaredDistanceOff()
    distance.UseImageSpacingOn()
    distance.SetNumberOfThreads(1)
    return sitk.GetArrayFromImage(distance.Execute(_image(mask, roi)))


def _erode(mask: np.ndarray, mm: float, roi: Volume) -> np.ndarray:
    # SimpleITK gives the mask's own boundary voxels 0 and their outside neighbours -spacing, so
    # "deeper than mm" is >= mm here and "within mm outside" is >= -mm.
    return _thresholded(mask, mm - 1e-6, ~mask, True, mm, roi) if mask.any() else mask


def _dilate(mask: np.ndarray, mm: float, roi: Volume) -> np.ndarray:
    return _thresholded(mask, -mm - 1e-6, mask, False, mm, roi) if mask.any() else mask


def _thresholded(mask: np.ndarray, level: float, around: np.ndarray, far: bool, mm: float, roi: Volume) -> np.ndarray:
    """_distance(mask) >= level, computed on the box of `around` widened by mm (and two voxels)
    only: farther out the answer is `far`. The map there is the same as on the whole region, since
    the mask's boundary voxels (next to what is outside it) all lie in the box and SimpleITK does
    not count the image's edge as a boundary (all inside: no boundary, every distance huge). The
    lung's closing over the wall erodes a set that fills most of the region, the core's dilation
    grows a small one: a fraction of the voxels, or none, need the map."""
    box = bounding_box(around, np.ceil(mm / np.array(roi.spacing)[::-1]).astype(int) + 2)
    out = np.full(mask.shape, far)
    if box is not None:
        out[box] = _distance(mask[box], roi) >= level
    return out


def _close(mask: np.ndarray, mm: float, roi: Volume) -> np.ndarray:
    return _erode(_dilate(mask, mm, roi), mm, roi)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    fill = sitk.BinaryFillholeImageFilter()
    fill.SetNumberOfThreads(1)  # as _distance's
    return sitk.GetArrayFromImage(fill.Execute(sitk.GetImageFromArray(mask.astype(np.uint8)))) > 0


def _components(mask: np.ndarray) -> np.ndarray:
    """Labels of the mask's face-connected components (ITK numbers them in raster order)."""
    label = sitk.ConnectedComponentImageFilter()
    label.SetNumberOfThreads(1)  # as _distance's
    return sitk.GetArrayFromImage(label.Execute(sitk.GetImageFromArray(mask.astype(np.uint8))))


def _air_near(air: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """The air components that reach within LUNG_AIR_MM of the click: the lung around the nodule."""
    labels = _components(air)
    near = np.unique(labels[(distance <= LUNG_AIR_MM) & (labels > 0)])
    return np.isin(labels, near)


def _nearest(mask: np.ndarray, hu: np.ndarray, distance: np.ndarray):
    """The voxel of `mask` nearest to the click (the densest among equally near ones), or None."""
    if not mask.any():
        return None
    score = np.where(mask, distance - hu * 1e-6, np.inf)
    return np.unravel_index(int(np.argmin(score)), mask.shape)


def _inscribed_radius(dist: np.ndarray, seed, roi: Volume) -> float:
    """Distance (mm) from the seed region to the nearest non-dense voxel: the nodule's half-width.
    `dist`: _distance of the dense structure."""
    k, j, i = seed
    window = dist[max(k - 3, 0):k + 4, max(j - 3, 0):j + 4, max(i - 3, 0):i + 4]
    return float(max(window.max(), min(roi.spacing)))


def _component_at(mask: np.ndarray, seed, distance: np.ndarray) -> np.ndarray | None:
    """The connected component holding the seed, or the one nearest to it within SEARCH_MM."""
    if not mask.any():
        return None
    labels = _components(mask)
    label = labels[seed]
    if label == 0:
        near = (labels > 0) & (distance <= SEARCH_MM)
        if not near.any():
            return None
        label = labels[near][np.argmin(distance[near])]
    return labels == label


def _numbers(roi: Volume, hu: np.ndarray, nodule: np.ndarray, core: np.ndarray, background: float, level: float,
             lung: np.ndarray, dense: np.ndarray) -> NoduleMeasurement:
    voxel_mm3 = float(np.prod(roi.spacing))
    ball = sitk.sitkBall
    interior = sitk.GetArrayFromImage(sitk.BinaryErode(_image(nodule, roi), [1, 1, 1], ball)) > 0
    outer = sitk.GetArrayFromImage(sitk.BinaryDilate(_image(nodule, roi), [1, 1, 1], ball)) > 0
    # Boundary voxels count by occupancy; neighbours that belong to other dense structures (vessels,
    # wall) are left out. Occupancy is not clipped below zero, so noise in lung voxels averages out.
    others = dense & ~core
    band = outer & ~interior & ~others
    occupancy = np.minimum((hu[band] - background) / (level - background), 1.0)
    volume = voxel_mm3 * (interior.sum() + occupancy.sum())
    k, j, i = np.nonzero(nodule)
    centre_ijk = np.array([i.mean(), j.mean(), k.mean()])
    long_axis, short_axis = _axial_diameters(nodule, roi)
    values = hu[nodule]
    solid = nodule & (hu > SOLID_HU)
    solid_fraction = solid.sum() / nodule.sum()
    if solid_fraction >= 0.8 or level > SOLID_HU:
        kind, solid_diameter = "solid", None
    elif solid_fraction < 0.02:
        kind, solid_diameter = "ground-glass", None
    else:
        kind = "part-solid"
        long_s, short_s = _axial_diameters(_largest_component(solid), roi)
        solid_diameter = round((long_s + short_s) / 2, 1)
    wall = ~lung & dense
    touching = sitk.GetArrayFromImage(sitk.BinaryDilate(_image(nodule, roi), _radius(1.5, roi), ball)) > 0
    return NoduleMeasurement(
        centre_lps_mm=tuple(float(v) for v in roi.index_to_lps(centre_ijk)), volume_mm3=float(volume),
        long_axis_mm=long_axis, short_axis_mm=short_axis, mean_diameter_mm=round((long_axis + short_axis) / 2, 1),
        mean_hu=float(values.mean()), max_hu=float(values.max()), type=kind, solid_mean_diameter_mm=solid_diameter,
        juxtapleural=bool(np.any(touching & wall)), mask=roi.with_voxels(nodule.astype(np.uint8), unit=""))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels = _components(mask)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(np.argmax(counts))


def _axial_diameters(mask: np.ndarray, roi: Volume) -> tuple[float, float]:
    """Long axis (largest in-plane distance) and the longest perpendicular chord on the axial slice
    where the nodule is largest, both in mm to 0.1 mm. Pixels count as squares, so each is
    measured between pixel corners (the convex hull of the pixels)."""
    areas = mask.sum(axis=(1, 2))
    k = int(np.argmax(areas))
    j, i = np.nonzero(mask[k])
    corners = np.array([(i + di, j + dj) for di in (-0.5, 0.5) for dj in (-0.5, 0.5)]).transpose(2, 0, 1).reshape(-1, 2)
    xy = corners * np.array(roi.spacing[:2])  # mm in the slice (axial grids: i along x, j along y)
    hull = _hull(xy)
    d = np.linalg.norm(hull[:, None] - hull[None], axis=-1)
    a, b = np.unravel_index(int(np.argmax(d)), d.shape)
    long_axis = float(d[a, b])
    axis = (hull[b] - hull[a]) / max(long_axis, 1e-9)
    normal = np.array([-axis[1], axis[0]])
    # Longest chord perpendicular to the long axis: sample chords across the hull.
    along = (hull - hull[a]) @ axis
    across = (hull - hull[a]) @ normal
    best = 0.0
    for t in np.linspace(along.min(), along.max(), 64):
        crossings = []
        for p, q in zip(range(len(hull)), list(range(1, len(hull))) + [0]):
            s0, s1 = along[p] - t, along[q] - t
            if s0 == s1 or s0 * s1 > 0:
                continue
            w = s0 / (s0 - s1)
            crossings.append(across[p] + w * (across[q] - across[p]))
        if len(crossings) >= 2:
            best = max(best, max(crossings) - min(crossings))
    # The pixel-corner hull is wider than the object by about one pixel: measure centre to centre.
    pixel = float(np.mean(roi.spacing[:2]))
    return round(max(long_axis - pixel, pixel), 1), round(max(best - pixel, pixel), 1)


def _hull(points: np.ndarray) -> np.ndarray:
    """2-D convex hull vertices in order. Pixel-corner sets are never degenerate (each pixel brings
    a square), so Qhull always succeeds."""
    pts = np.unique(np.round(points, 6), axis=0)
    return pts[ConvexHull(pts).vertices]
