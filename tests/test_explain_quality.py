"""The localisation measures of explanation maps (viewer.inference.explain_quality) on maps whose
answer is known: a block of relevance on an oblique, anisotropic grid."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.results import Heatmap, LabelInfo, ModelRef
from viewer.core.volume import Volume
from viewer.inference.explain_quality import in_mask, mass_inside, peak_lps, sphere


def oblique_affine(spacing=(0.7, 0.9, 2.5), angle_deg=30.0, origin=(-20.0, 15.0, 40.0)) -> np.ndarray:
    a = np.radians(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rotation = rotation @ np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def heatmap_of(voxels: np.ndarray, affine: np.ndarray) -> Heatmap:
    return Heatmap(Volume(voxels.astype(np.float32), affine), ModelRef("m", "1"), "Grad-CAM",
                   LabelInfo(0, "x"), 0.9)


def test_peak_and_mass_on_an_oblique_anisotropic_grid():
    affine = oblique_affine()
    values = np.zeros((12, 20, 24))
    values[5:7, 8:11, 10:13] = 1.0  # the block: 18 voxels
    values[6, 9, 11] = 2.0  # its peak
    values[0, 0, 0] = 2.0 * 0.25  # mass outside: 0.5 of 19.5 + 0.5
    heatmap = heatmap_of(values, affine)
    expected_peak = affine[:3, :3] @ [11, 9, 6] + affine[:3, 3]
    assert np.allclose(peak_lps(heatmap), expected_peak)
    block = Volume((values > 0.9).astype(np.uint8), affine)
    assert mass_inside(heatmap, in_mask(block)) == pytest.approx(19.0 / 19.5)
    corner = affine[:3, 3]
    assert mass_inside(heatmap, sphere(corner, 0.5)) == pytest.approx(0.5 / 19.5)
    assert mass_inside(heatmap_of(np.zeros((2, 2, 2)), affine), sphere(corner, 5)) == 0.0


def test_mask_on_another_grid_and_a_bad_contains():
    affine = oblique_affine()
    values = np.zeros((8, 8, 8))
    values[4, 4, 4] = 1.0
    heatmap = heatmap_of(values, affine)
    centre = peak_lps(heatmap)
    mask_affine = np.eye(4)
    mask_affine[:3, 3] = centre - 3.0  # a 1 mm axis-aligned grid whose voxel (3, 3, 3) is the peak
    mask = np.zeros((7, 7, 7), np.uint8)
    mask[3, 3, 3] = 1
    assert mass_inside(heatmap, in_mask(Volume(mask, mask_affine))) == pytest.approx(1.0)
    mask_affine[:3, 3] += 2.0  # moved 2 mm: the peak now falls on an empty voxel
    assert mass_inside(heatmap, in_mask(Volume(mask, mask_affine))) == 0.0
    with pytest.raises(ValueError, match="one boolean per point"):
        mass_inside(heatmap, lambda p: np.ones(len(p) + 1, bool))
