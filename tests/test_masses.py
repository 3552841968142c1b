"""Masses and large nodules put into a synthetic chest (the demo generator's "small" preset, 2.6 mm
voxels, a seed used nowhere else): a solid sphere deep in one lung, its edge blurred like a
scanner's. Detection must report it once, at its centre (within 5 mm), as a nodule up to 30 mm and
as a mass above, with a mean diameter within 15% of the truth (the Lung-RADS diameter is measured
on the axial section through the centre, where a sphere's is its diameter)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from viewer.analysis.detection import detect_nodules
from viewer.analysis.lung_region import lung_region
from viewer.demo import generate_demo
from viewer.dicom import load


@pytest.fixture(scope="module")
def chest(tmp_path_factory):
    demo = generate_demo(tmp_path_factory.mktemp("masses"), preset="small", n_visits=1, seed=141)
    volume = load(demo.visits[0].study_dir)
    lungs = lung_region(volume)
    depth = ndimage.distance_transform_edt(lungs.air, sampling=np.array(volume.spacing)[::-1])
    return volume, depth


def _with_sphere(volume, depth, diameter_mm: float):
    """The volume with a 40 HU sphere where the lung is deepest (far enough from the wall for it)."""
    k, j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
    assert depth[k, j, i] > diameter_mm / 2, "the phantom's lung is too thin for this sphere"
    centre = volume.index_to_lps([i, j, k])
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), -1)
    distance = np.linalg.norm((grid - [k, j, i]) * np.array(volume.spacing)[::-1], axis=-1)
    inside = np.clip(diameter_mm / 2 - distance + 0.5, 0.0, 1.0)  # one-voxel partial-volume edge
    voxels = volume.voxels.astype(np.float32) * (1 - inside) + 40.0 * inside
    return volume.with_voxels(voxels.astype(np.int16)), centre


@pytest.mark.slow
@pytest.mark.parametrize("diameter_mm, kind", [(20.0, "nodule"), (36.0, "mass"), (50.0, "mass")])
def test_a_sphere_is_found_as_what_its_size_makes_it(chest, diameter_mm, kind):
    volume, depth = chest
    if depth.max() <= diameter_mm / 2:
        pytest.skip(f"no room for a {diameter_mm} mm sphere in this phantom's lung ({depth.max():.0f} mm deep)")
    with_sphere, centre = _with_sphere(volume, depth, diameter_mm)
    found = [d for d in detect_nodules(with_sphere)
             if np.linalg.norm(np.subtract(d.measurement.centre_lps_mm, centre)) <= diameter_mm / 2]
    assert len(found) == 1, [(d.measurement.kind, d.measurement.mean_diameter_mm) for d in found]
    m = found[0].measurement
    assert np.linalg.norm(np.subtract(m.centre_lps_mm, centre)) <= 5.0
    assert m.kind == kind
    assert abs(m.mean_diameter_mm - diameter_mm) <= 0.15 * diameter_mm, m.mean_diameter_mm
