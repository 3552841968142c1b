"""Preprocessing as small named transforms composed from a model card (STYLE.md rule 6).

Each transform maps a Volume to a Volume, so geometry travels with the values and the model's
output can be mapped back onto the study's grid exactly. Resampling uses SimpleITK.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from viewer.core.volume import Volume

Transform = Callable[[Volume], Volume]


def to_sitk(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.voxels))
    image.SetOrigin(volume.origin)
    image.SetSpacing(volume.spacing)
    image.SetDirection(tuple(volume.direction.flatten()))
    return image


def from_sitk(image: sitk.Image, like: Volume, unit: str | None = None) -> Volume:
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return Volume(sitk.GetArrayFromImage(image), affine, like.frame_of_reference_uid, like.source,
                  like.warnings, like.display, like.unit if unit is None else unit)


def _fill(volume: Volume) -> float:
    return float(np.min(volume.voxels))


def reorient(volume: Volume, to: str = "LPS") -> Volume:
    """Axis-aligned LPS grid (identity direction). Flips and axis swaps are exact (SimpleITK's
    DICOMOrient); oblique grids are then resampled (linear) onto the axis-aligned box holding them."""
    if to != "LPS":
        raise ValueError(f"reorient supports 'LPS' only, not {to!r}")
    if np.allclose(volume.direction, np.eye(3), atol=1e-6):
        return volume
    image = sitk.DICOMOrient(to_sitk(volume), "LPS")
    oriented = from_sitk(image, volume)
    if np.allclose(oriented.direction, np.eye(3), atol=1e-6):
        return oriented
    nz, ny, nx = volume.shape
    corners = volume.index_to_lps([(i, j, k) for i in (0, nx - 1) for j in (0, ny - 1) for k in (0, nz - 1)])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    spacing = np.full(3, min(volume.spacing))
    size = [int(np.floor((hi[a] - lo[a]) / spacing[a])) + 1 for a in range(3)]
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetOrigin(tuple(lo))
    ref.SetSpacing(tuple(spacing))
    out = sitk.Resample(to_sitk(volume), ref, sitk.Transform(), sitk.sitkLinear, _fill(volume), sitk.sitkFloat32)
    return from_sitk(out, volume)


def resample(volume: Volume, spacing_mm, interpolator=sitk.sitkLinear) -> Volume:
    """To `spacing_mm` (x, y, z) from the same origin, covering the same extent."""
    spacing = np.asarray(spacing_mm, float)
    if np.allclose(spacing, volume.spacing, atol=1e-6):
        return volume
    extent = (np.array(volume.shape[::-1]) - 1) * np.array(volume.spacing)
    size = [int(np.floor(extent[a] / spacing[a] + 1e-6)) + 1 for a in range(3)]
    image = to_sitk(volume)
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetOrigin(image.GetOrigin())
    ref.SetSpacing(tuple(spacing))
    ref.SetDirection(image.GetDirection())
    out_type = sitk.sitkFloat32 if interpolator != sitk.sitkNearestNeighbor else image.GetPixelID()
    out = sitk.Resample(image, ref, sitk.Transform(), interpolator, _fill(volume), out_type)
    return from_sitk(out, volume)


def window(volume: Volume, low: float, high: float, out_low: float = 0.0, out_high: float = 1.0) -> Volume:
    """Clip to [low, high] and map linearly onto [out_low, out_high]."""
    v = np.clip(volume.voxels.astype(np.float32), low, high)
    v = (v - low) / (high - low) * (out_high - out_low) + out_low
    return volume.with_voxels(v.astype(np.float32), unit="1")


def zscore(volume: Volume, mean: float | None = None, std: float | None = None,
           mask_above: float | None = None) -> Volume:
    """(v - mean) / std; mean and std from the voxels (above `mask_above`, if given) when absent."""
    v = volume.voxels.astype(np.float32)
    sample = v[v > mask_above] if mask_above is not None else v
    m = float(sample.mean()) if mean is None else float(mean)
    s = float(sample.std()) if std is None else float(std)
    return volume.with_voxels((v - m) / max(s, 1e-6), unit="1")


def crop_pad(volume: Volume, size, fill: float | None = None) -> Volume:
    """Centre crop or pad to `size` (z, y, x voxels); the origin moves so geometry stays right."""
    size = [int(v) for v in size]
    fill = _fill(volume) if fill is None else float(fill)
    out = np.full(size, fill, dtype=volume.voxels.dtype)
    src, dst, shift = [], [], []
    for n, want in zip(volume.shape, size):
        start = (n - want) // 2  # >0 crop, <0 pad
        s0, d0 = max(start, 0), max(-start, 0)
        length = min(n - s0, want - d0)
        src.append(slice(s0, s0 + length))
        dst.append(slice(d0, d0 + length))
        shift.append(start)
    out[tuple(dst)] = volume.voxels[tuple(src)]
    affine = np.array(volume.affine)
    affine[:3, 3] = volume.index_to_lps([shift[2], shift[1], shift[0]])
    return Volume(out, affine, volume.frame_of_reference_uid, volume.source, volume.warnings, volume.display,
                  volume.unit)


REGISTRY: dict[str, Callable[..., Volume]] = {
    "reorient": reorient, "resample": resample, "window": window, "zscore": zscore, "crop_pad": crop_pad,
}


def compose(steps) -> list[Transform]:
    """Callables for the card's preprocessing list (already validated by ModelCard)."""
    result = []
    for step in steps:
        params = {k: v for k, v in step.items() if k != "name"}
        fn = REGISTRY[step["name"]]
        result.append(lambda vol, fn=fn, params=params: fn(vol, **params))
    return result


def output_fill(steps) -> float:
    """The value empty space has after preprocessing: what patches are padded with."""
    for step in reversed(list(steps)):
        if step["name"] == "window":
            return float(step.get("out_low", 0.0))
        if step["name"] == "zscore":
            return 0.0
    return 0.0
