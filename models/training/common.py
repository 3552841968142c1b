"""Shared data preparation for the RadSight demo models.

The preprocessing here is written to be *identical* to what the RadSight engine does from a model
card (viewer/inference/transforms.py and viewer/inference/run.py):

1. reorient   - axis-aligned LPS (the synthetic demo volumes already have an identity direction),
2. resample   - to `spacing_mm` (x, y, z) from the volume origin, covering the same extent;
                linear for CT (fill = volume minimum), nearest for labels,
3. window     - clip HU to [low, high] and map linearly onto [out_low, out_high].

`check_against_engine()` compares these functions with the engine's on a real volume.
Training data come from the synthetic generator `viewer.demo.generate_demo`; generated studies are
cached under $RADSIGHT_MODEL_DATA (default /tmp/radsight-model-data).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import SimpleITK as sitk

WINDOW = {"low": -1000.0, "high": 400.0, "out_low": 0.0, "out_high": 1.0}
DATA_ROOT = Path(os.environ.get("RADSIGHT_MODEL_DATA", "/tmp/radsight-model-data"))

# lung = left lung (1) + right lung (2) + pulmonary vessels (4); airway (3) is background;
# nodule = every label >= 10.
LUNG_LABELS = (1, 2, 4)
NODULE_MIN_LABEL = 10
KINDS = ("solid", "part-solid", "ground-glass")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


# ----------------------------------------------------------------------------- geometry helpers
def _to_sitk(voxels: np.ndarray, origin, spacing, direction=np.eye(3)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(voxels))
    image.SetOrigin(tuple(float(v) for v in origin))
    image.SetSpacing(tuple(float(v) for v in spacing))
    image.SetDirection(tuple(float(v) for v in np.asarray(direction).flatten()))
    return image


def reorient(voxels: np.ndarray, origin, spacing, direction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axis-aligned LPS. The demo data are already LPS (identity direction); anything else is
    flipped/permuted exactly by SimpleITK's DICOMOrient (oblique grids are not supported here)."""
    direction = np.asarray(direction, float)
    if np.allclose(direction, np.eye(3), atol=1e-6):
        return voxels, np.asarray(origin, float), np.asarray(spacing, float)
    image = sitk.DICOMOrient(_to_sitk(voxels, origin, spacing, direction), "LPS")
    if not np.allclose(np.array(image.GetDirection()).reshape(3, 3), np.eye(3), atol=1e-6):
        raise ValueError("oblique volume: not supported by the training code")
    return sitk.GetArrayFromImage(image), np.array(image.GetOrigin()), np.array(image.GetSpacing())


def resample(voxels: np.ndarray, origin, spacing, spacing_mm, nearest: bool = False) -> np.ndarray:
    """(z, y, x) array on a grid with `spacing_mm` (x, y, z), same origin, same extent.
    Linear (float32 out) for images, nearest (dtype kept) for labels; fill = array minimum."""
    spacing = np.asarray(spacing, float)
    new = np.asarray(spacing_mm, float)
    if np.allclose(new, spacing, atol=1e-6):
        return voxels
    extent = (np.array(voxels.shape[::-1]) - 1) * spacing
    size = [int(np.floor(extent[a] / new[a] + 1e-6)) + 1 for a in range(3)]
    image = _to_sitk(voxels, origin, spacing)
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetOrigin(image.GetOrigin())
    ref.SetSpacing(tuple(new))
    ref.SetDirection(image.GetDirection())
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out_type = image.GetPixelID() if nearest else sitk.sitkFloat32
    out = sitk.Resample(image, ref, sitk.Transform(), interp, float(np.min(voxels)), out_type)
    return sitk.GetArrayFromImage(out)


def window(voxels: np.ndarray, low=-1000.0, high=400.0, out_low=0.0, out_high=1.0) -> np.ndarray:
    v = np.clip(voxels.astype(np.float32), low, high)
    v = (v - low) / (high - low) * (out_high - out_low) + out_low
    return v.astype(np.float32)


def preprocess(voxels, origin, spacing, direction, spacing_mm, labels=None):
    """Card preprocessing of a CT (and, optionally, its label map on the same grid).
    Returns (image float32 (z, y, x), labels or None, origin, spacing)."""
    v, o, s = reorient(voxels, origin, spacing, direction)
    lab = None
    if labels is not None:
        lab, _, _ = reorient(labels, origin, spacing, direction)
        lab = resample(lab, o, s, spacing_mm, nearest=True)
    img = window(resample(v, o, s, spacing_mm), **WINDOW)
    out_spacing = np.asarray(spacing_mm, float) if not np.allclose(spacing_mm, s, atol=1e-6) else s
    return img, lab, o, out_spacing


def seg_target(labels: np.ndarray) -> np.ndarray:
    """Label map -> class index: 0 background, 1 lung (labels 1, 2, 4), 2 nodule (labels >= 10)."""
    t = np.zeros(labels.shape, np.uint8)
    t[np.isin(labels, LUNG_LABELS)] = 1
    t[labels >= NODULE_MIN_LABEL] = 2
    return t


# ----------------------------------------------------------------------------- classifier crops
def classifier_crop(volume, point_lps, crop_mm, spacing_mm) -> np.ndarray:
    """The crop the engine feeds the classifier (viewer.inference.run.classify): a sub-volume of the
    original grid around the point (half size crop_mm/2 + 2 * max spacing), then reorient, resample
    (from the sub-volume's origin), window, and a crop of round(crop_mm / spacing) voxels whose centre
    is the voxel nearest the point, padded with out_low. Returns (z, y, x) float32."""
    point = np.asarray(point_lps, float)
    half = np.asarray(crop_mm, float) / 2 + 2 * max(volume.spacing)
    corners = np.array([point + half * (2 * np.array(s) - 1) for s in np.ndindex(2, 2, 2)])
    ijk = volume.lps_to_index(corners)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, None)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 2, np.array(volume.shape[::-1]))
    sub = np.ascontiguousarray(volume.voxels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]])
    origin = volume.index_to_lps(lo)
    img, _, o, s = preprocess(sub, origin, volume.spacing, volume.direction, spacing_mm)
    # index of the point on the resampled grid (identity direction after reorient)
    centre = np.rint((point - o) / s).astype(int)[::-1]  # (k, j, i)
    size = [int(round(c / sp)) for c, sp in zip(np.asarray(crop_mm, float)[::-1], np.asarray(s)[::-1])]
    start = centre - np.array(size) // 2
    out = np.full(tuple(size), WINDOW["out_low"], np.float32)
    src, dst = [], []
    for a in range(3):
        s0, s1 = max(start[a], 0), min(start[a] + size[a], img.shape[a])
        if s1 <= s0:
            raise ValueError("crop outside the volume")
        src.append(slice(s0, s1))
        dst.append(slice(s0 - start[a], s1 - start[a]))
    out[tuple(dst)] = img[tuple(src)]
    return out


# ----------------------------------------------------------------------------- synthetic data
def study(preset: str, seed: int, n_visits: int = 3):
    """Generate (or reuse) a synthetic study set; returns (list of visit dicts, ground truth).
    Each visit dict: study_dir, labels_path, nodules (ground truth of that visit)."""
    from viewer.demo import generate_demo

    out = DATA_ROOT / f"{preset}-{seed}-{n_visits}"
    marker = out / "truth.json"
    import json

    if marker.exists():
        truth = json.loads(marker.read_text())
    else:
        res = generate_demo(out, preset=preset, n_visits=n_visits, seed=seed)
        truth = res.ground_truth()
        visits = []
        for i, v in enumerate(res.visits):
            visits.append({"study_dir": str(v.study_dir), "labels_path": str(v.labels_path),
                           "nodules": truth["visits"][i]["nodules"]})
        truth = {"visits": visits}
        marker.write_text(json.dumps(truth, default=str))
    return truth["visits"]


def load_visit(visit):
    from viewer.dicom import load

    return load(visit["study_dir"]), load(visit["labels_path"])


def check_against_engine(spacing_mm=(2.0, 2.0, 2.5), preset="small", seed=100) -> float:
    """Max abs difference between this module's preprocessing and the engine's."""
    from viewer.inference import transforms as T

    ct, _ = load_visit(study(preset, seed)[0])
    ours, _, _, _ = preprocess(ct.voxels, ct.origin, ct.spacing, ct.direction, spacing_mm)
    eng = T.window(T.resample(T.reorient(ct), spacing_mm), **WINDOW).voxels
    assert ours.shape == eng.shape, (ours.shape, eng.shape)
    return float(np.abs(ours - eng).max())
