"""The lungs as the CT itself shows them, and the region where lung lesions may lie.

A segmentation model's lung label leaves out what it was not trained on: a mass or a
juxtapleural nodule on a real scan is dense tissue, and a model taught "lung = aerated" cuts it
away, so a search confined to that label never sees it. This region is built from the HU alone,
so it works with any model or none:

- aerated lung is what is below -400 HU on a grid of about 1.4 mm in-plane (block means, which
  also quiet the noise of low-dose scans);
- air outside the patient is the air that reaches the scan's in-plane border and is as dark as
  air (median below -950 HU): lung parenchyma is -700 to -900 HU, so a cropped scan whose lung
  reaches the border keeps it;
- the large airways (trachea, main bronchi) are removed slice by slice: small components of pure
  air (median below -920 HU) in the middle of the chest, where the lungs are not;
- each lung's outline is closed slice by slice with a disc of `closing_mm` (a rolling ball over
  the pleura, bounded by that lung's own outline, so the two lungs are never joined across the
  mediastinum) and its holes filled, so a nodule or mass on the wall, at the hilum or inside the
  lung is in the region. Slice by slice because clinical slices are 0.6 to 8 mm thick: an in-plane
  disc behaves the same on all of them.

SimpleITK labels the study's air, scipy.ndimage does the slices' labelling, distance maps and
hole filling; nothing here is a hand-written filter.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from viewer.analysis.grids import block_mean, upsample
from viewer.core.volume import Volume

AIR_HU = -400.0            # aerated: below this
OUTSIDE_AIR_HU = -950.0    # air outside the body is darker than this (median); lung is -700..-900
AIRWAY_HU = -920.0         # a large airway's lumen (median) is darker than this
AIRWAY_MAX_CM2 = 8.0       # trachea and main bronchi in cross-section; a lung is larger
CLOSING_MM = 30.0          # dents up to ~60 mm across (masses at the pleura or hilum) stay inside the region
PLEURA_CLOSING_MM = 8.0    # closes over vessels and small nodules, not over the wall's own curves
GRID_MM = 1.4              # in-plane grid for the region: edges of 20 mm morphology need no finer
MIN_LUNG_FRACTION = 0.05   # air components smaller than this share of the largest are not lung (bowel gas)
MIN_LUNG_ML = 5.0
SLICE_THREADS = min(2, os.cpu_count() or 1)


@dataclass(frozen=True, eq=False)
class LungRegion:
    """Aerated lung and the lesion search region, both (z, y, x) bool on the study grid."""

    air: np.ndarray
    region: np.ndarray
    spacing_zyx: tuple[float, float, float]
    midline_x_mm: float  # LPS x of the plane between the lungs: the patient's right lung is below it
    lung: np.ndarray     # the lungs closed only over vessels and small nodules (PLEURA_CLOSING_MM): the
                         # pleura's own line, from which a point's depth in the lung is measured

    @property
    def air_ml(self) -> float:
        return float(self.air.sum()) * float(np.prod(self.spacing_zyx)) / 1000.0


def lung_region(volume: Volume, closing_mm: float = CLOSING_MM) -> LungRegion:
    """Aerated lung and lesion search region of a CT volume in HU (see the module docstring)."""
    spacing = np.array(volume.spacing, float)[::-1]  # z, y, x
    factor = np.array([1, *np.maximum(np.floor(GRID_MM / spacing[1:]), 1).astype(int)])
    hu = block_mean(volume.voxels, factor)
    step = spacing * factor
    air = _lungs_only(hu < AIR_HU, hu, step)
    air &= ~_large_airways(air, hu, step)
    isocentre = volume.lps_to_index([0.0, 0.0, volume.origin[2]])[0] / factor[2]
    midline = _midline(hu, isocentre)
    region, lung = _closed_per_lung(air, step, (closing_mm, PLEURA_CLOSING_MM), midline)
    middle = volume.index_to_lps([(midline + 0.5) * factor[2] - 0.5, volume.shape[1] / 2, volume.shape[0] / 2])
    return LungRegion(upsample(air, factor, volume.shape), upsample(region, factor, volume.shape),
                      tuple(float(s) for s in spacing), float(middle[0]), upsample(lung, factor, volume.shape))


def _lungs_only(air: np.ndarray, hu: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The lungs (with their airways): the large air components, once the air outside the patient
    is left out: components that reach the in-plane border and are as dark as air (median below
    OUTSIDE_AIR_HU, counted as: more than half their voxels are). Small ones are bowel gas or
    noise. One labelling serves both tests: leaving whole components out leaves the others as
    they were."""
    # SimpleITK labels the whole study on both cores and counts per label without the 64-bit
    # copies np.bincount makes of a study-sized label array (seconds on a 512 x 512 x 255 scan).
    # Face connectivity, as ndimage.label's in the slices below.
    components = sitk.ConnectedComponent(sitk.GetImageFromArray(air.view(np.uint8)))
    labels = sitk.GetArrayViewFromImage(components)
    count = int(labels.max()) if labels.size else 0
    if count == 0:
        return air
    stats = sitk.LabelStatisticsImageFilter()
    stats.Execute(sitk.GetImageFromArray((hu < OUTSIDE_AIR_HU).view(np.uint8)), components)
    sizes = np.zeros(count + 1, np.int64)
    dark = np.zeros(count + 1, bool)
    for label in stats.GetLabels():
        if label > 0:
            sizes[label] = stats.GetCount(label)
            dark[label] = 2 * round(stats.GetSum(label)) > sizes[label]  # more than half below
    border = np.unique(np.concatenate([labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()]))
    outside = np.zeros(count + 1, bool)
    outside[border] = dark[border]
    sizes[outside] = 0
    ml = sizes * float(np.prod(step)) / 1000.0
    keep = (sizes >= MIN_LUNG_FRACTION * sizes.max()) & (ml >= MIN_LUNG_ML) & (sizes > 0)
    return keep[labels]


def _share_below(labels: np.ndarray, hu: np.ndarray, level: float, count: int) -> np.ndarray:
    """Per label (index = label), the share of its voxels below `level`: median < level exactly
    when the share exceeds one half. By counting: ndimage.median sorts each label's voxels."""
    total = np.bincount(labels.ravel(), minlength=count + 1)
    below = np.bincount(labels[hu < level], minlength=count + 1)
    return below / np.maximum(total, 1)


def _large_airways(air: np.ndarray, hu: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Trachea and main bronchi, slice by slice: small components of pure air between the lungs
    (centre in the middle fifth of the lungs' left-right extent)."""
    out = np.zeros_like(air)
    columns = np.flatnonzero(air.any(axis=(0, 1)))
    if len(columns) == 0:
        return out
    left, right = columns[0], columns[-1]
    middle = (left + 0.4 * (right - left), left + 0.6 * (right - left))
    max_area = AIRWAY_MAX_CM2 * 100.0 / (step[1] * step[2])
    columns_x = np.arange(air.shape[2], dtype=np.float64)[None, :]
    for k in range(air.shape[0]):
        labels, count = ndimage.label(air[k])
        if count == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        x = np.bincount(labels.ravel(), weights=np.broadcast_to(columns_x, labels.shape).ravel(),
                        minlength=count + 1) / np.maximum(areas, 1)
        airway = (areas <= max_area) & (_share_below(labels, hu[k], AIRWAY_HU, count) > 0.5) & \
            (x >= middle[0]) & (x <= middle[1])
        airway[0] = False
        if airway.any():
            out[k] = airway[labels]
    return out


def _closed_per_lung(air: np.ndarray, step: np.ndarray, radii_mm: tuple[float, ...],
                     midline: float) -> list[np.ndarray]:
    """Each slice's right and left lung (its air components either side of the midline column)
    closed with a disc of each radius and filled, one side at a time: the lesion that splits a
    lung's air in two in a slice is bridged, the mediastinum between the lungs never is. One mask
    per radius; the slice's labels and the dilation's distance map serve them all."""
    regions = [np.zeros_like(air) for _ in radii_mm]
    pad = int(np.ceil(max(radii_mm) / min(step[1:]))) + 2

    def close_slice(k: int) -> None:  # writes slice k of the regions only
        labels, count = ndimage.label(air[k])
        if count == 0:
            return
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        x = np.bincount(labels.ravel(), weights=np.broadcast_to(np.arange(air.shape[2], dtype=np.float64),
                                                                 labels.shape).ravel(), minlength=count + 1)
        right = x / np.maximum(areas, 1) < midline  # columns run along +x (LPS: towards the left)
        for side in (right, ~right):
            side = side.copy()
            side[0] = False
            if not side.any():
                continue
            mask = side[labels]
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            lo = [max(rows[0] - pad, 0), max(cols[0] - pad, 0)]
            hi = [min(rows[-1] + pad + 1, air.shape[1]), min(cols[-1] + pad + 1, air.shape[2])]
            for region, closed in zip(regions, _close_disc(mask[lo[0]:hi[0], lo[1]:hi[1]], step[1:], radii_mm)):
                region[k, lo[0]:hi[0], lo[1]:hi[1]] |= ndimage.binary_fill_holes(closed)

    # The slices are independent and scipy releases the GIL in their distance maps and hole filling:
    # two threads took 4.5 -> 2.5 s on the COVID scan (2 cores), with identical masks.
    with ThreadPoolExecutor(SLICE_THREADS) as pool:
        list(pool.map(close_slice, range(air.shape[0])))
    return [region | air for region in regions]


def _midline(hu: np.ndarray, isocentre_column: float) -> float:
    """Column of the body's midline: the centre of the body's left-right extent when the body
    lies inside the field of view, else the column of LPS x = 0 (the scanner's isocentre, near
    the midline by positioning), which is all a scan cropped to one side offers."""
    body = (hu > -500).any(axis=(0, 1))
    columns = np.flatnonzero(body)
    if len(columns) and columns[0] > 0 and columns[-1] < len(body) - 1:
        return 0.5 * (columns[0] + columns[-1])
    return isocentre_column


def _close_disc(mask: np.ndarray, step: np.ndarray, radii_mm: tuple[float, ...]) -> list[np.ndarray]:
    """Closings with discs of each radius (anisotropic pixels) by exact distance maps: a disc of
    any size at the cost of the transforms, not of a structuring element that wide; the
    dilation's map is shared."""
    padded = np.pad(mask, 1)
    outside = ndimage.distance_transform_edt(~padded, sampling=step)
    out = []
    for radius in radii_mm:
        closed = ndimage.distance_transform_edt(outside <= radius, sampling=step) > radius
        out.append((closed | padded)[1:-1, 1:-1])
    return out
