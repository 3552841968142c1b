"""Sliding-window inference over an N-d array with overlap, Gaussian blending and batching.

Written here rather than taken from MONAI because RadSight's predictor is ONNX Runtime on numpy
arrays; MONAI's implementation wants torch tensors and a torch model. The behaviour follows
MONAI's sliding_window_inference (Gaussian importance map, sigma = patch/8) and is tested with a
fake predictor whose output is known.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from viewer.core.errors import RadSightError


def patch_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Starts covering [0, size) with patches of `patch`; the last one ends at the edge."""
    if size <= patch:
        return [0]
    step = max(int(round(patch * (1 - overlap))), 1)
    starts = list(range(0, size - patch, step))
    return starts + [size - patch]


def importance_map(patch: tuple[int, ...], mode: str) -> np.ndarray:
    if mode == "constant":
        return np.ones(patch, np.float32)
    grids = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / max(n / 8, 1e-6)) ** 2) for n in patch]
    weight = grids[0]
    for g in grids[1:]:
        weight = np.multiply.outer(weight, g)
    weight = weight / weight.max()
    return np.maximum(weight, 1e-3).astype(np.float32)  # every voxel keeps some weight


def sliding_window(array: np.ndarray, patch: tuple[int, ...], predict: Callable[[np.ndarray], np.ndarray],
                   overlap: float = 0.25, blending: str = "gaussian", batch_size: int = 1, pad_value: float = 0.0,
                   progress: Callable[[int, int, str], None] | None = None,
                   cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """`array` is (C, *spatial); `predict` takes (N, C, *patch) and returns (N, K, *patch).
    Returns (K, *spatial) float32: the blended outputs."""
    spatial = array.shape[1:]
    if len(patch) != len(spatial):
        raise ValueError(f"patch {patch} does not match the {len(spatial)}-d input {spatial}")
    padded_shape = tuple(max(s, p) for s, p in zip(spatial, patch))
    if padded_shape != spatial:
        padded = np.full((array.shape[0],) + padded_shape, pad_value, dtype=array.dtype)
        padded[(slice(None),) + tuple(slice(0, s) for s in spatial)] = array
        array = padded
    starts = list(itertools.product(*(patch_starts(s, p, overlap) for s, p in zip(padded_shape, patch))))
    weight = importance_map(tuple(patch), blending)
    out = None
    norm = np.zeros(padded_shape, np.float32)
    for first in range(0, len(starts), batch_size):
        if cancelled is not None and cancelled():
            raise RadSightError("inference was cancelled")
        group = starts[first:first + batch_size]
        windows = [tuple(slice(s, s + p) for s, p in zip(start, patch)) for start in group]
        batch = np.stack([array[(slice(None),) + w] for w in windows])
        pred = np.asarray(predict(batch), dtype=np.float32)
        if pred.shape[0] != len(group) or pred.shape[2:] != tuple(patch):
            raise RadSightError(f"the model returned shape {pred.shape} for input {batch.shape}; "
                                "it must keep the patch's spatial size")
        if out is None:
            out = np.zeros((pred.shape[1],) + padded_shape, np.float32)
        for w, p in zip(windows, pred):
            out[(slice(None),) + w] += p * weight
            norm[w] += weight
        if progress is not None:
            progress(min(first + batch_size, len(starts)), len(starts), "running the model")
    out /= norm
    return out[(slice(None),) + tuple(slice(0, s) for s in spatial)]
