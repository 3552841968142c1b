"""Registration of demo follow-ups to their prior against the generator's known rigid motion,
and refusal of scans that share no anatomy.

The demo's visits do not share a Frame of Reference: visit v sees the anatomy through its own
rigid motion (ground_truth.json `transform.anatomy_to_scanner`), so the truth for a follow-up
point p is M_0 M_v^-1 p. Tolerance: 2 mm per nodule centre (measured on the small preset:
about 0.1 mm, seeds 5 and 11).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from viewer.analysis.registration import Registration, RegistrationError, register
from viewer.core.volume import Volume
from viewer.demo import generate_demo
from viewer.dicom import load

TOLERANCE_MM = 2.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    result = generate_demo(tmp_path_factory.mktemp("registration"), preset="small", n_visits=3, seed=11)
    return result, result.ground_truth(), [load(v.study_dir) for v in result.visits]


def truth_in_prior(truth: dict, visit: int, prior: int, points: np.ndarray) -> np.ndarray:
    to_anatomy = np.linalg.inv(np.array(truth["visits"][visit]["transform"]["anatomy_to_scanner"]))
    to_prior = np.array(truth["visits"][prior]["transform"]["anatomy_to_scanner"]) @ to_anatomy
    return points @ to_prior[:3, :3].T + to_prior[:3, 3]


def crop(volume: Volume, k0: int, k1: int) -> Volume:
    affine = np.array(volume.affine)
    affine[:3, 3] = volume.index_to_lps([0, 0, k0])
    return Volume(volume.voxels[k0:k1], affine, volume.frame_of_reference_uid, volume.source, unit=volume.unit)


@pytest.mark.slow
@pytest.mark.parametrize("visit, prior", [(1, 0), (2, 0), (2, 1)])
def test_recovers_the_true_motion(demo, visit, prior):
    _, truth, volumes = demo
    reg = register(volumes[prior], volumes[visit])
    centres = np.array([n["centre_lps_mm"] for n in truth["visits"][visit]["nodules"] if n["present"]])
    error = np.linalg.norm(reg.to_prior(centres) - truth_in_prior(truth, visit, prior, centres), axis=1)
    assert error.max() < TOLERANCE_MM, f"nodule centre errors {np.round(error, 2)} mm"
    back = reg.to_current(reg.to_prior(centres))
    assert np.allclose(back, centres, atol=1e-6)
    # The true motion is a repositioning of 1-3 degrees and 2-4 mm per axis: never the identity.
    assert np.linalg.norm(truth_in_prior(truth, visit, prior, centres) - centres, axis=1).min() > 2.0
    data = reg.to_json()
    assert data["prior_study_uid"] == truth["visits"][prior]["study_instance_uid"]
    assert data["current_study_uid"] == truth["visits"][visit]["study_instance_uid"]
    assert data["lung_overlap"] > 0.9 and data["correlation"] > 0.9
    assert data["seconds"] < 60


@pytest.mark.slow
def test_given_lung_mask_gives_the_same_answer(demo):
    result, truth, volumes = demo
    labels = load(result.visits[0].labels_path)
    lungs = labels.with_voxels(np.isin(labels.voxels, (1, 2)).astype(np.uint8))
    reg = register(volumes[0], volumes[1], fixed_mask=lungs)
    centres = np.array([n["centre_lps_mm"] for n in truth["visits"][1]["nodules"]])
    error = np.linalg.norm(reg.to_prior(centres) - truth_in_prior(truth, 1, 0, centres), axis=1)
    assert error.max() < TOLERANCE_MM


@pytest.mark.slow
def test_different_body_region_is_refused(demo):
    _, _, volumes = demo
    apex, base = crop(volumes[0], 55, 80), crop(volumes[1], 0, 25)  # upper vs lower 60 mm of the chest
    with pytest.raises(RegistrationError, match="does not match its prior.*overlap by"):
        register(apex, base)


@pytest.mark.slow
def test_unrelated_volume_is_refused(demo):
    _, _, volumes = demo
    z, y, x = np.mgrid[:60, :100, :100]
    water = np.where((y - 50) ** 2 + (x - 50) ** 2 < 40 ** 2, 40.0, -1000.0)
    water += np.random.default_rng(0).normal(0.0, 20.0, water.shape)
    with pytest.raises(RegistrationError, match="no lungs found in the follow-up: 0 ml"):
        register(volumes[0], Volume(water, np.diag([3.0, 3.0, 3.0, 1.0])))


def test_matrix_registration_maps_both_ways():
    a = math.radians(3.0)
    matrix = np.array([[math.cos(a), -math.sin(a), 0, 2.5], [math.sin(a), math.cos(a), 0, -3.0],
                       [0, 0, 1, 4.0], [0, 0, 0, 1]])
    reg = Registration.from_matrix(matrix, prior_study_uid="1.2.3", current_study_uid="1.2.4")
    points = np.array([[10.0, -20.0, 30.0], [0.0, 0.0, 0.0]])
    assert np.allclose(reg.to_current(points), points @ matrix[:3, :3].T + matrix[:3, 3])
    assert np.allclose(reg.to_prior(reg.to_current(points)), points)
    assert np.allclose(reg.matrix, matrix)
    assert reg.to_current([1.0, 2.0, 3.0]).shape == (3,)
    data = reg.to_json()
    assert data["rotation_deg"] == pytest.approx(3.0, abs=1e-3)
    assert data["translation_mm"] == [2.5, -3.0, 4.0]
    with pytest.raises(RegistrationError, match="singular"):
        Registration.from_matrix(np.diag([1.0, 1.0, 0.0, 1.0]))
    with pytest.raises(RegistrationError, match="4x4"):
        Registration.from_matrix(np.eye(3))
