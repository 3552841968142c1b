"""Run a carded model on a volume: preprocessing, (sliding-window) inference, and the result
mapped back onto the study's grid with geometry intact."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk

from viewer.core.errors import RadSightError
from viewer.core.results import Classification, Mask
from viewer.core.volume import Volume
from viewer.inference.card import ModelCard
from viewer.inference.session import ModelSession, get_session
from viewer.inference.sliding_window import sliding_window
from viewer.inference.transforms import compose, crop_pad, output_fill, to_sitk

Progress = Callable[[int, int, str], None]


class InferenceError(RadSightError):
    """The model cannot be run on this study; the message names the model and the mismatch."""


def check_applicable(card: ModelCard, volume: Volume) -> None:
    modality = volume.source.modality
    if not card.applies_to(modality):
        raise InferenceError(f"model {card.id} {card.version} is for {', '.join(card.modalities)} studies; "
                             f"this series is {modality or 'of unknown modality'}")
    needs_mm = any(step["name"] in ("resample", "reorient") for step in card.preprocessing) or card.crop_mm
    if needs_mm and any(w.code in ("no_patient_geometry", "no_pixel_spacing") for w in volume.warnings):
        raise InferenceError(f"model {card.id} {card.version} works in millimetres, but this series has no "
                             "patient geometry (no Image Position/Orientation or Pixel Spacing)")


def preprocess(card: ModelCard, volume: Volume) -> Volume:
    for transform in compose(card.preprocessing):
        volume = transform(volume)
    return volume


def _activate(logits: np.ndarray, activation: str) -> np.ndarray:
    """(K, ...) logits or scores to probabilities over the first axis."""
    if activation == "softmax":
        shifted = logits - logits.max(axis=0, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=0, keepdims=True)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


def _spatial_patch(card: ModelCard, shape: tuple[int, ...]) -> tuple[int, ...]:
    if card.patch_size:
        return card.patch_size
    if card.spatial_size:
        return card.spatial_size
    return tuple(shape)  # fully dynamic model: the whole volume at once


def segment(volume: Volume, card: ModelCard, session: ModelSession | None = None, provider: str | None = None,
            progress: Progress | None = None, cancelled: Callable[[], bool] | None = None) -> Mask:
    """Label volume on `volume`'s grid (values = output channel indices) with confidence."""
    if card.task != "segmentation":
        raise InferenceError(f"model {card.id} is a {card.task} model, not a segmentation model")
    check_applicable(card, volume)
    session = session or get_session(card, provider)
    pre = preprocess(card, volume)
    array = pre.voxels.astype(np.float32)[None]  # (C=1, z, y, x)
    fill = output_fill(card.preprocessing)
    if card.spatial_dims == 3:
        logits = sliding_window(array, _spatial_patch(card, array.shape[1:]), session.predict, card.overlap,
                                card.blending, card.batch_size, fill, progress, cancelled)
    else:  # 2-D model: axial slices of the preprocessed volume
        patch = _spatial_patch(card, array.shape[2:])
        slices = []
        for k in range(array.shape[1]):
            slices.append(sliding_window(array[:, k], patch, session.predict, card.overlap, card.blending,
                                         card.batch_size, fill, None, cancelled))
            if progress is not None:
                progress(k + 1, array.shape[1], "running the model")
        logits = np.stack(slices, axis=1)
    probabilities = _activate(logits, card.activation)
    labels, confidence = _back_to_grid(probabilities, pre, volume, binary=probabilities.shape[0] == 1)
    return Mask(volume.with_voxels(labels, unit=""), card.labels, card.ref,
                volume.with_voxels(confidence, unit="1"), session.provider)


def _back_to_grid(probabilities: np.ndarray, pre: Volume, target: Volume, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    """Resample each class's probability onto the study grid (linear) and take the argmax there,
    one class at a time so memory stays at two study-sized arrays (plus one mask).

    In place with `copyto(where=)` on a view of SimpleITK's buffer: boolean fancy indexing and
    the array copy cost three times the resampling itself on a 512x512x255 CT.
    """
    reference = to_sitk(target.with_voxels(np.zeros(target.shape, np.uint8)))
    best = np.zeros(target.shape, np.float32)
    labels = np.zeros(target.shape, np.uint8)
    chosen = np.empty(target.shape, bool)
    for c in range(probabilities.shape[0]):
        image = to_sitk(pre.with_voxels(probabilities[c].astype(np.float32)))
        resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
        p = sitk.GetArrayViewFromImage(resampled)  # valid while `resampled` lives (this iteration)
        if binary:
            np.greater_equal(p, 0.5, out=chosen)
            np.copyto(labels, np.uint8(1), where=chosen)
            np.subtract(np.float32(1), p, out=best)
            np.copyto(best, p, where=chosen)
        else:
            np.greater(p, best, out=chosen)
            np.copyto(best, p, where=chosen)
            np.copyto(labels, np.uint8(c), where=chosen)
        del p, resampled
    return labels, best


def classifier_input(volume: Volume, card: ModelCard, point_lps=None) -> Volume:
    """What a classifier sees, as a Volume on the model's input grid: the card's crop centred on
    `point_lps` (or the whole preprocessed volume), with the crop's position in its affine so a
    heatmap on this grid lands on the study exactly. 2-D models see one axial slice: (1, H, W)."""
    fill = output_fill(card.preprocessing)
    two_d = card.spatial_dims == 2
    point = np.asarray(point_lps, float) if point_lps is not None else None
    if card.crop_mm:
        if point is None:
            raise InferenceError(f"model {card.id} classifies a crop around a point: give the point (--at X,Y,Z)")
        crop_xyz = np.asarray(card.crop_mm[::-1] if not two_d else tuple(card.crop_mm[::-1]) + (0.0,), float)
        region = _region_around(volume, point, crop_xyz / 2 + 2 * max(volume.spacing))
        pre = preprocess(card, region)
        size = card.spatial_size or tuple(int(round(c / s)) for c, s in zip(crop_xyz[::-1], pre.spacing[::-1])
                                          if c > 0)
        return _crop_centred(pre, point, ((1,) if two_d else ()) + tuple(size), fill)
    pre = preprocess(card, volume)
    if two_d:
        if point is None and pre.shape[0] != 1:
            raise InferenceError(f"model {card.id} is a 2-D classifier: give a point (--at X,Y,Z) to choose "
                                 f"the slice of this {pre.shape[0]}-slice series")
        k = 0 if point is None else int(np.clip(np.rint(pre.lps_to_index(point)[2]), 0, pre.shape[0] - 1))
        affine = np.array(pre.affine)
        affine[:3, 3] = pre.index_to_lps([0, 0, k])
        pre = Volume(np.ascontiguousarray(pre.voxels[k:k + 1]), affine, pre.frame_of_reference_uid, pre.source,
                     pre.warnings, pre.display, pre.unit)
    if card.spatial_size:
        pre = crop_pad(pre, ((1,) if two_d else ()) + tuple(card.spatial_size), fill)
    return pre


def as_batch(model_input: Volume, card: ModelCard) -> np.ndarray:
    """(1, 1, *spatial) float32 for `ModelSession.predict`."""
    voxels = model_input.voxels[0] if card.spatial_dims == 2 else model_input.voxels
    return voxels.astype(np.float32)[None, None]


def probabilities_of(card: ModelCard, scores: np.ndarray) -> np.ndarray:
    """One sample's class scores to probabilities, checked against the card's class list."""
    probabilities = _activate(np.asarray(scores, np.float32).reshape(-1), card.activation)
    if len(probabilities) != len(card.labels):
        raise InferenceError(f"model {card.id} returned {len(probabilities)} scores; its card lists "
                             f"{len(card.labels)} classes")
    return probabilities


def classify(volume: Volume, card: ModelCard, point_lps=None, session: ModelSession | None = None,
             provider: str | None = None) -> Classification:
    """Class probabilities for the whole volume, or for the card's crop centred on `point_lps`."""
    if card.task != "classification":
        raise InferenceError(f"model {card.id} is a {card.task} model, not a classifier")
    check_applicable(card, volume)
    session = session or get_session(card, provider)
    pre = classifier_input(volume, card, point_lps)
    probabilities = probabilities_of(card, session.predict(as_batch(pre, card))[0])
    point = tuple(float(v) for v in point_lps) if point_lps is not None else None
    return Classification(card.ref, card.labels, tuple(float(p) for p in probabilities), point, session.provider)


def _region_around(volume: Volume, point: np.ndarray, half_mm: np.ndarray) -> Volume:
    """The sub-volume (original grid) holding an LPS box around `point`, so only it is resampled."""
    corners = np.array([point + half_mm * (2 * np.array(s) - 1) for s in np.ndindex(2, 2, 2)])
    ijk = volume.lps_to_index(corners)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, None)
    hi = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 2, np.array(volume.shape[::-1]))
    if np.any(hi <= lo):
        raise InferenceError(f"the point {tuple(np.round(point, 1))} mm is outside the volume")
    voxels = volume.voxels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    affine = np.array(volume.affine)
    affine[:3, 3] = volume.index_to_lps(lo)
    return Volume(np.ascontiguousarray(voxels), affine, volume.frame_of_reference_uid, volume.source,
                  volume.warnings, volume.display, volume.unit)


def _crop_centred(volume: Volume, point: np.ndarray, size, fill: float) -> Volume:
    """Exactly `size` (z, y, x) voxels whose centre is the voxel nearest `point`."""
    centre = np.rint(volume.lps_to_index(point)).astype(int)[::-1]  # (k, j, i)
    start = centre - np.array(size) // 2
    out = np.full(tuple(size), fill, np.float32)
    src, dst = [], []
    for a in range(3):
        s0, s1 = max(start[a], 0), min(start[a] + size[a], volume.shape[a])
        if s1 <= s0:
            raise InferenceError("the crop around the point lies outside the volume")
        src.append(slice(s0, s1))
        dst.append(slice(s0 - start[a], s1 - start[a]))
    out[tuple(dst)] = volume.voxels[tuple(src)]
    affine = np.array(volume.affine)
    affine[:3, 3] = volume.index_to_lps(start[::-1])
    return Volume(out, affine, volume.frame_of_reference_uid, volume.source, volume.warnings, volume.display, "1")
