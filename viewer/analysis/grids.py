"""Block grids: a volume averaged (or max-pooled) over whole blocks of voxels and a coarse mask
repeated back onto the study grid. Detection works on such grids where its structures are
millimetres wide, which keeps a 512 x 512 x 300 CT to seconds."""

from __future__ import annotations

import numpy as np


def blocks(array: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """(Z, fz, Y, fy, X, fx) view of the array padded by edge values to whole blocks."""
    pad = [(0, (-n) % f) for n, f in zip(array.shape, factor)]
    padded = np.pad(array, pad, mode="edge") if any(p[1] for p in pad) else array
    z, y, x = (n // f for n, f in zip(padded.shape, factor))
    return padded.reshape(z, factor[0], y, factor[1], x, factor[2])


def block_mean(array: np.ndarray, factor: np.ndarray) -> np.ndarray:
    if np.all(np.asarray(factor) == 1):
        return array.astype(np.float32, copy=False)
    return blocks(array, factor).mean(axis=(1, 3, 5), dtype=np.float32)


def block_max(array: np.ndarray, factor: np.ndarray) -> np.ndarray:
    if np.all(np.asarray(factor) == 1):
        return array
    return blocks(array, factor).max(axis=(1, 3, 5))


def bounding_box(mask: np.ndarray, pad=0) -> tuple[slice, ...] | None:
    """The slices of the mask's bounding box, widened by `pad` voxels (one number, or one per
    axis) within the array; None when the mask is empty."""
    if not mask.any():
        return None
    pad = np.broadcast_to(np.asarray(pad, int), (mask.ndim,))
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(hit[0] - pad[axis], 0), min(hit[-1] + pad[axis] + 1, mask.shape[axis])))
    return tuple(box)


def upsample(mask: np.ndarray, factor: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Each coarse voxel repeated over its block, cut to the study grid's shape."""
    fine = mask
    for axis, f in enumerate(factor):
        if f > 1:
            fine = np.repeat(fine, f, axis=axis)
    return fine[:shape[0], :shape[1], :shape[2]]
