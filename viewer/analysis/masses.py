"""Lung masses: solid lesions larger than a nodule (> 30 mm), found in the CT-derived lung region.

A mass is too large for the blob detector's scales and for `measure_at`'s region, and it often
abuts the chest wall, the hilum or the mediastinum, so it is found as what it is: solid tissue
(> -300 HU) inside the lung region (viewer.analysis.lung_region, which closes each lung over
dents up to ~60 mm), left after a morphological opening that removes everything thinner than
MIN_CORE_MM (vessels, fissures, the pleura), with an equivalent diameter of at least
MIN_MASS_MM. What the region's closing bridged without a lesion in it (the hilum's vessels, a
sliver of heart or diaphragm at the lung's edge) is thinner than that core, contrast-filled, or
out of touch with aerated lung, so a mass's core must be large, not contrast-dense, and touch
aerated lung over a fair share of its surface.

The mass is measured on the study grid with viewer.analysis.nodules' numbers (partial-volume
volume, Lung-RADS axial diameters), so a mass and a nodule are reported alike.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from viewer.analysis.grids import block_mean, bounding_box, upsample
from viewer.analysis.lung_region import LungRegion
from viewer.analysis.nodules import NoduleMeasurement, measurement_of
from viewer.core.volume import Volume

SOLID_HU = -300.0
MIN_CORE_MM = 6.0        # opening radius: structures thinner than 12 mm are not a mass's core
MIN_MASS_MM = 40.0       # equivalent diameter of the opened core: the hilum's vessels reach ~35 mm
MAX_CORE_HU = 120.0      # median HU of the core: above, contrast-filled vessels (a mass enhances less)
MIN_AIR_CONTACT = 0.15   # share of the shell 2-5 mm outside the core that is aerated lung
GRID_MM = 2.0
AERATED_HU = -700.0


def find_masses(volume: Volume, region: LungRegion) -> list[NoduleMeasurement]:
    """Solid lesions with an opened core >= MIN_MASS_MM across in the lung region, largest first."""
    spacing = np.array(volume.spacing, float)[::-1]
    factor = np.maximum(np.floor(GRID_MM / spacing), 1).astype(int)
    step = spacing * factor
    inside = block_mean(region.region.astype(np.float32), factor) > 0.5
    if not inside.any():
        return []
    crop = bounding_box(inside, np.ceil(10.0 / step).astype(int))  # the lungs' bounding box: the rest cannot hold a mass
    hu = block_mean(volume.voxels, factor)
    solid = (hu[crop] > SOLID_HU) & inside[crop]
    core = ndimage.distance_transform_edt(solid, sampling=step) > MIN_CORE_MM
    core = ndimage.distance_transform_edt(~core, sampling=step) <= MIN_CORE_MM + float(step.max())
    core &= solid
    labels, count = ndimage.label(core)
    found = []
    voxel = float(np.prod(step))
    for n, box in enumerate(ndimage.find_objects(labels), start=1):
        piece = labels[box] == n
        ml = piece.sum() * voxel / 1000.0
        if (6.0 * ml * 1000.0 / np.pi) ** (1 / 3) < MIN_MASS_MM:
            continue
        if np.median(hu[crop][box][piece]) > MAX_CORE_HU:
            continue
        whole = np.zeros(inside.shape, bool)
        whole[crop] = labels == n
        if _air_contact(hu, whole, step) < MIN_AIR_CONTACT:
            continue
        m = _measure(volume, whole, factor, region)
        if m is not None:
            found.append(m)
    return sorted(found, key=lambda m: -m.volume_mm3)


def _air_contact(hu: np.ndarray, piece: np.ndarray, step: np.ndarray) -> float:
    """Share of the shell 2-5 mm outside the piece that is aerated lung (on the piece's box)."""
    box = bounding_box(piece, np.ceil(6.0 / step).astype(int))
    outside = ndimage.distance_transform_edt(~piece[box], sampling=step)
    shell = (outside > 2.0) & (outside <= 5.0)
    return float(np.mean(hu[box][shell] < AERATED_HU)) if shell.any() else 0.0


def _measure(volume: Volume, piece: np.ndarray, factor: np.ndarray, region: LungRegion) -> NoduleMeasurement | None:
    """The mass on the study grid: its solid voxels within a voxel of the coarse core."""
    fine = upsample(piece, factor, volume.shape)
    box = bounding_box(fine, np.ceil(4.0 / np.array(volume.spacing)[::-1]).astype(int))
    lo = np.array([b.start for b in box])
    hu = volume.voxels[box].astype(np.float32)
    grown = ndimage.distance_transform_edt(~fine[box], sampling=np.array(volume.spacing)[::-1]) <= 2.0
    nodule = grown & (hu > SOLID_HU)
    labels, count = ndimage.label(nodule)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    nodule = labels == int(np.argmax(sizes))
    affine = np.array(volume.affine)
    affine[:3, 3] = volume.index_to_lps(lo[::-1])
    roi = Volume(hu, affine, volume.frame_of_reference_uid, volume.source, unit=volume.unit)
    return measurement_of(roi, nodule, region.region[box], kind="mass")
