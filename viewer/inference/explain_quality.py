"""How well an explanation map points at a finding: the map's peak in LPS and the share of its
mass inside a region. The pointing game (Zhang et al. 2018: is the peak inside the lesion?) and
mass share are the usual localisation checks for saliency maps; they are written here, not taken
from a library, because captum and quantus measure on the model's input array, whereas a finding
lives in the study's LPS space and a Heatmap carries its own affine (a resampled, possibly oblique
crop). Used by `explain` (the "mostly outside the finding" flag), `radsight validate` and the tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from viewer.core.results import Heatmap


def peak_lps(heatmap: Heatmap) -> np.ndarray:
    """LPS mm (3,) of the centre of the map's largest voxel (the first one on ties)."""
    values = heatmap.values
    k, j, i = np.unravel_index(int(np.argmax(values.voxels)), values.shape)
    return values.index_to_lps(np.array([i, j, k], float))


def voxel_centres_lps(heatmap: Heatmap) -> np.ndarray:
    """LPS mm (N, 3) of every voxel centre of the map, in the order of `values.voxels.ravel()`."""
    k, j, i = np.indices(heatmap.values.shape).reshape(3, -1)
    return heatmap.values.index_to_lps(np.stack([i, j, k], axis=1).astype(float))


def mass_inside(heatmap: Heatmap, contains: Callable[[np.ndarray], np.ndarray]) -> float:
    """Share (0..1) of the map's positive mass whose voxel centres `contains(points_lps (N, 3))`
    accepts (a boolean (N,) array). 0.0 for a map with no positive value."""
    values = np.clip(np.asarray(heatmap.values.voxels, np.float64).ravel(), 0, None)
    total = float(values.sum())
    if total <= 0:
        return 0.0
    positive = values > 0
    inside = np.asarray(contains(voxel_centres_lps(heatmap)[positive]), bool)
    if inside.shape != (int(positive.sum()),):
        raise ValueError(f"contains() returned shape {inside.shape} for {int(positive.sum())} points; "
                         "it must return one boolean per point")
    return float(values[positive][inside].sum() / total)


def sphere(centre_lps, diameter_mm: float) -> Callable[[np.ndarray], np.ndarray]:
    """`contains` for a ball: the stand-in for a finding whose mask is not at hand."""
    centre, radius = np.asarray(centre_lps, float), float(diameter_mm) / 2

    def contains(points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(np.asarray(points, float) - centre, axis=1) <= radius

    return contains


def in_mask(mask_volume, threshold: float = 0.5) -> Callable[[np.ndarray], np.ndarray]:
    """`contains` for a mask on any grid (a viewer.core Volume whose voxels > threshold are the
    finding): each point takes the value of its nearest voxel; points off the grid are outside."""
    voxels = np.asarray(mask_volume.voxels)

    def contains(points: np.ndarray) -> np.ndarray:
        ijk = np.rint(mask_volume.lps_to_index(np.asarray(points, float))).astype(int)
        shape = np.array(voxels.shape[::-1])
        ok = np.all((ijk >= 0) & (ijk < shape), axis=1)
        out = np.zeros(len(ijk), bool)
        out[ok] = voxels[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]] > threshold
        return out

    return contains
