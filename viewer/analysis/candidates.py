"""Nodule candidates in a CT volume: where a nodule may be, before anything is measured.

Two sources: connected components of a segmentation model's nodule probability map when it has
any, and a classical blob detector inside the lung region (viewer.analysis.lung_region, from the CT
itself, plus a model's lung label closed over the pleura by `search_region`) that works without it. Both, because a model's
nodule channel misses some nodules (the bundled model's card gives its sensitivity) and a model
without one, or no model at all (threshold lung mask), must still find nodules.

The blob detector is the scale-normalised Laplacian of Gaussian, -sigma^2 * LoG, at scales in
millimetres; it peaks at the centre of a bright sphere of radius r at sigma = r / sqrt(3). A
vessel answers too, so each local maximum is kept only if the Hessian at its scale is negative
in all three directions with the weakest curvature a fair fraction of the strongest: a blob
curves down every way, a tube is flat along its axis. Large scales run on block-averaged grids
(a Gaussian that wide removes what the averaging loses), which keeps a 384 x 384 x 200 scan to
seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from viewer.analysis.grids import block_max, block_mean, bounding_box
from viewer.core.volume import Volume

# Scales (mm): sigma = r / sqrt(3) for nodule radii ~2.4 to ~14 mm, a factor sqrt(2) apart.
SCALES_MM = (1.4, 2.0, 2.8, 4.0, 5.6, 8.0)
MIN_RESPONSE_HU = 60.0    # normalised LoG at the centre: solid nodules give ~300-800, ground glass ~100-200
MIN_SHAPE = 0.25          # weakest / strongest Hessian curvature: a sphere 1, a straight tube 0
_POOL = ThreadPoolExecutor(2, thread_name_prefix="radsight-log")  # the LoG's two slabs

CLOSING_MM = 10.0         # the lung mask is closed over dents this deep (juxtapleural nodules)
MARGIN_MM = 3.0           # and dilated this far past the pleura

Cancelled = Callable[[], bool]


@dataclass(frozen=True)
class Candidate:
    """A point (LPS mm) where a nodule may be, with what found it and how strongly."""

    point_lps: tuple[float, float, float]
    source: str           # "blob" or "channel"
    scale_mm: float       # blob: sigma of the strongest response; channel: equivalent radius
    response: float       # blob: normalised LoG in HU; channel: mean nodule probability
    shape: float          # blob: weakest / strongest curvature (0..1); channel: 1.0


def search_region(lung: np.ndarray, volume: Volume) -> np.ndarray:
    """Where candidates may lie: the lung with its holes filled (nodules the model left out),
    closed over dents at the pleura (juxtapleural nodules) and dilated a little. Done on a grid of
    about 3 mm, which is ample for a region whose edges are 10 mm morphology."""
    spacing = np.array(volume.spacing)[::-1]  # z, y, x
    factor = np.maximum(np.floor(3.0 / spacing), 1).astype(int)
    coarse = block_max(lung > 0, factor)
    image = sitk.GetImageFromArray(coarse.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in (spacing * factor)[::-1]))
    # Morphology by a distance threshold: a ball of any radius in mm, in linear time.
    def dist(img):
        return sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    closed = sitk.BinaryThreshold(dist(image), -1e9, CLOSING_MM, 1, 0)
    closed = sitk.BinaryNot(sitk.BinaryThreshold(dist(sitk.BinaryNot(closed)), -1e9, CLOSING_MM, 1, 0))
    closed = sitk.BinaryFillhole(sitk.Or(closed, image))
    region = sitk.BinaryThreshold(dist(closed), -1e9, MARGIN_MM, 1, 0)
    coarse = sitk.GetArrayFromImage(region) > 0
    fine = np.repeat(np.repeat(np.repeat(coarse, factor[0], 0), factor[1], 1), factor[2], 2)
    return fine[:lung.shape[0], :lung.shape[1], :lung.shape[2]]


def channel_candidates(probability: Volume, threshold: float = 0.5) -> list[Candidate]:
    """One candidate per connected component of nodule probability >= threshold, at its
    probability-weighted centre."""
    values = np.asarray(probability.voxels, np.float32)
    above = values >= threshold
    if not above.any():
        return []
    # The components on the bounding box of what is above the threshold: a whole-study label and
    # moments pass over 67 M voxels where a nodule channel has a few thousand.
    box = bounding_box(above)
    values, offset = values[box], np.array([b.start for b in box])
    labels, count = ndimage.label(above[box])
    index = np.arange(1, count + 1)
    centres = [np.asarray(c) + offset for c in ndimage.center_of_mass(values, labels, index)]
    means = ndimage.mean(values, labels, index)
    sizes = ndimage.sum_labels(np.ones_like(values), labels, index) * float(np.prod(probability.spacing))
    out = []
    for centre, mean, size in zip(centres, means, sizes):
        point = probability.index_to_lps(np.asarray(centre)[::-1])
        out.append(Candidate(tuple(float(v) for v in point), "channel", float((3 * size / (4 * np.pi)) ** (1 / 3)),
                             float(mean), 1.0))
    return out


def blob_candidates(volume: Volume, region: np.ndarray, progress: Callable[[int, int, str], None] | None = None,
                    cancelled: Cancelled | None = None) -> list[Candidate]:
    """Blob centres inside `region` (bool, study grid), strongest first, one per 3 mm."""
    box = bounding_box(region, np.ceil(3 * max(SCALES_MM) / np.array(volume.spacing)[::-1]).astype(int))
    if box is None:
        return []
    hu = volume.voxels[box].astype(np.float32)
    np.clip(hu, -1000.0, 200.0, out=hu)  # bone and metal would ring
    inside = region[box]
    spacing = np.array(volume.spacing)[::-1]
    offset = np.array([s.start for s in box])
    found = []
    for n, sigma in enumerate(SCALES_MM):
        if cancelled is not None and cancelled():
            return []
        factor = np.maximum(np.floor(sigma / spacing), 1).astype(int)
        image = block_mean(hu, factor)
        step = spacing * factor
        response = _normalised_log(image, sigma / step)
        mask = block_max(inside, factor)[:image.shape[0], :image.shape[1], :image.shape[2]]
        at = np.argwhere((response >= MIN_RESPONSE_HU) & mask)
        at = at[_local_maxima(response, at)]
        shapes = _hessian_shapes(image, at, sigma / step)
        for (k, j, i), shape in zip(at, shapes):
            if shape < MIN_SHAPE:
                continue
            centre = offset + (np.array([k, j, i]) + 0.5) * factor - 0.5  # block centre on the study grid
            point = volume.index_to_lps(centre[::-1])
            found.append(Candidate(tuple(float(v) for v in point), "blob", sigma, float(response[k, j, i]), shape))
        if progress is not None:
            progress(n + 1, len(SCALES_MM), f"blob filter at {sigma:g} mm")
    return _suppress(found, 3.0)


def _normalised_log(image: np.ndarray, sigma_vox: np.ndarray) -> np.ndarray:
    """-sigma^2 * Laplacian of the Gaussian-smoothed image, sigma and derivatives in mm: each
    axis's second derivative (per voxel^2) is weighted by its sigma in voxels squared.

    Each term is ndimage.gaussian_filter's own sequence of 1-D passes (axis 0, 1, 2, in float32),
    so the result is the same to the bit; the y and x terms share their first pass (smoothing
    along z), which spares one of the nine passes over the study. Each pass runs on two slabs
    cut across another axis, in two threads: its lines are filtered independently, so the slabs
    give the same bits, and scipy's 1-D filters release the GIL (1.5x on 2 cores)."""
    def smooth(data: np.ndarray, axis: int, order: int, out: np.ndarray) -> np.ndarray:
        cut = 1 if axis == 0 else 0
        if data.shape[cut] < 2:
            return ndimage.gaussian_filter1d(data, sigma_vox[axis], axis, order, out, mode="nearest")
        half = data.shape[cut] // 2
        slabs = [tuple(slice(a, b) if d == cut else slice(None) for d in range(3))
                 for a, b in ((0, half), (half, data.shape[cut]))]
        list(_POOL.map(lambda slab: ndimage.gaussian_filter1d(data[slab], sigma_vox[axis], axis, order, out[slab],
                                                              mode="nearest"), slabs))
        return out

    # Buffers reused for the terms: study-sized arrays cost page faults.
    total = np.zeros(image.shape, np.float32)
    term = np.empty(image.shape, np.float32)
    along_z = smooth(image, 0, 0, np.empty(image.shape, np.float32))
    for axis in range(3):  # the term of d2/d(axis)2, in gaussian_filter's order of passes
        first = smooth(image, 0, 2, term) if axis == 0 else along_z
        smooth(first, 1, 2 if axis == 1 else 0, term)
        smooth(term, 2, 2 if axis == 2 else 0, term)
        term *= float(sigma_vox[axis] ** 2)  # a Python float keeps the big array float32
        total -= term
    return total


def _local_maxima(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether each point (k, j, i) is a maximum of its 3 x 3 x 3 neighbourhood (edges repeated):
    ndimage.maximum_filter(size=3, mode="nearest") at the points only, since a whole-grid filter
    costs seconds on a fine scale where a few per cent of the voxels are above the threshold."""
    value = image[tuple(points.T)]
    keep = np.ones(len(points), bool)
    top = np.array(image.shape) - 1
    for offset in np.argwhere(np.ones((3, 3, 3), bool)) - 1:
        if not offset.any():
            continue
        neighbour = np.clip(points + offset, 0, top)
        keep &= image[tuple(neighbour.T)] <= value
    return keep


def _hessian_shapes(image: np.ndarray, points: np.ndarray, sigma_vox: np.ndarray) -> np.ndarray:
    """Weakest over strongest curvature (0..1) of a bright blob at each point (k, j, i), 0 unless
    all three Hessian eigenvalues are negative. Evaluated only at the points, as sums of patches
    against separable Gaussian-derivative kernels (derivatives in mm via sigma in voxels), since
    most of the grid needs no Hessian."""
    if len(points) == 0:
        return np.zeros(0)
    reach = np.ceil(3 * sigma_vox).astype(int)
    kernels = [[_gaussian_kernel(s, r, order) * s ** order for order in range(3)] for s, r in zip(sigma_vox, reach)]
    padded = np.pad(image, [(r, r) for r in reach], mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, tuple(2 * reach + 1))
    out = np.empty(len(points))
    for start in range(0, len(points), 2048):
        chunk = points[start:start + 2048]
        patches = windows[chunk[:, 0], chunk[:, 1], chunk[:, 2]].astype(np.float32)
        hessian = np.empty((len(chunk), 3, 3))
        for a in range(3):
            for b in range(a, 3):
                order = [0, 0, 0]
                order[a] += 1
                order[b] += 1
                value = np.einsum("nzyx,z,y,x->n", patches, kernels[0][order[0]], kernels[1][order[1]],
                                  kernels[2][order[2]], optimize=True)
                hessian[:, a, b] = hessian[:, b, a] = value
        eig = np.linalg.eigvalsh(hessian)  # ascending: most negative first
        out[start:start + len(chunk)] = np.where(eig[:, 2] < 0, eig[:, 2] / np.minimum(eig[:, 0], -1e-12), 0.0)
    return out


def _gaussian_kernel(sigma: float, radius: int, order: int) -> np.ndarray:
    """Sampled 1-D Gaussian (order 0) or its derivatives (1, 2) per voxel, as a correlation
    kernel (x ascending), normalised like scipy.ndimage.gaussian_filter's."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    if order == 1:
        return x / sigma ** 2 * g
    if order == 2:
        return (x ** 2 / sigma ** 4 - 1 / sigma ** 2) * g
    return g


def _suppress(candidates: list[Candidate], radius_mm: float) -> list[Candidate]:
    """Strongest first; a candidate within radius_mm of a stronger one is the same blob."""
    ordered = sorted(candidates, key=lambda c: -c.response)
    kept: list[Candidate] = []
    points = np.empty((0, 3))
    for c in ordered:
        p = np.array(c.point_lps)
        if len(points) and np.min(np.linalg.norm(points - p, axis=1)) < max(radius_mm, c.scale_mm):
            continue
        kept.append(c)
        points = np.vstack([points, p])
    return kept
