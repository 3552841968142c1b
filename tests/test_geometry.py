"""Slice sorting and geometry: the marker written at a known LPS point must be found there.

Tolerances: positions are written with 6 decimals, so 1e-3 mm agreement is expected wherever
no resampling happens; after tilt correction the marker is found within one voxel (it is
smeared by linear interpolation) and its intensity-weighted centre within 0.05 mm.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from tests.dicom_factory import MARKER, write_series
from viewer.dicom import load, open_path


def marker_lps(volume) -> np.ndarray:
    k, j, i = np.unravel_index(np.argmax(volume.voxels), volume.shape)
    return volume.index_to_lps([i, j, k])


def weighted_marker_lps(volume) -> np.ndarray:
    """Intensity-weighted centre of the marker above background (robust to interpolation)."""
    v = volume.voxels.astype(float)
    bright = v > 100
    k, j, i = np.nonzero(bright)
    w = v[bright]
    ijk = np.stack([i, j, k], axis=1)
    return volume.index_to_lps((ijk * w[:, None]).sum(0) / w.sum())


def sitk_read(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def assert_matches_sitk(volume, folder):
    image = sitk_read(folder)
    np.testing.assert_allclose(volume.origin, image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(volume.spacing, image.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(volume.direction.flatten(), image.GetDirection(), atol=1e-6)
    np.testing.assert_array_equal(volume.voxels, sitk.GetArrayFromImage(image))


HEAD_FIRST = dict(orientation=(1, 0, 0, 0, 1, 0), origin=(-10.0, -8.0, 30.0), step=2.0)
# Feet-first supine: the patient's left is on the image's left, so the row direction is -x.
FEET_FIRST = dict(orientation=(-1, 0, 0, 0, 1, 0), origin=(10.0, -8.0, -30.0), step=2.5)


@pytest.mark.parametrize("case", [HEAD_FIRST, FEET_FIRST], ids=["head-first", "feet-first"])
def test_marker_lands_at_its_lps_position(tmp_path, case):
    truth = write_series(tmp_path, **case)
    vol = load(tmp_path)
    np.testing.assert_allclose(marker_lps(vol), truth["marker_lps"], atol=1e-3)
    assert vol.voxels.max() == MARKER
    assert vol.warnings == ()
    assert_matches_sitk(vol, tmp_path)


def test_sorting_ignores_instance_numbers_and_file_names(tmp_path):
    ref = load(write_series(tmp_path / "ref", seed=1)["paths"][0].parent)
    truth = write_series(tmp_path / "odd", instance_order="decreasing", names="shuffled", seed=1)
    vol = load(tmp_path / "odd")
    np.testing.assert_array_equal(vol.voxels, ref.voxels)
    np.testing.assert_allclose(vol.affine, ref.affine, atol=1e-6)
    np.testing.assert_allclose(marker_lps(vol), truth["marker_lps"], atol=1e-3)
    # Slices come out ordered along the normal: distance increases with k.
    first, last = vol.index_to_lps([0, 0, 0]), vol.index_to_lps([0, 0, vol.shape[0] - 1])
    assert (last - first) @ truth["normal"] > 0


def test_oblique_orientation(tmp_path):
    a, b = math.radians(20), math.radians(-12)
    row = np.array([math.cos(a), math.sin(a), 0.0])
    col = np.array([-math.sin(a) * math.cos(b), math.cos(a) * math.cos(b), math.sin(b)])
    truth = write_series(tmp_path, orientation=tuple(row) + tuple(col), origin=(3.0, -40.0, 12.5), step=1.5)
    vol = load(tmp_path)
    np.testing.assert_allclose(marker_lps(vol), truth["marker_lps"], atol=1e-3)
    np.testing.assert_allclose(vol.direction[:, 2], truth["normal"], atol=1e-6)
    assert_matches_sitk(vol, tmp_path)


def test_gantry_tilt_is_resampled_to_an_orthogonal_grid(tmp_path):
    step, tilt_deg = 2.0, 15.0
    # Tilt shears slice positions along the column (y) direction by step*tan(tilt) per slice.
    shear = (0.0, step * math.tan(math.radians(tilt_deg)), 0.0)
    truth = write_series(tmp_path, shape_zyx=(10, 40, 30), shear=shear, marker_ijk=(12, 20, 6))
    vol = load(tmp_path)
    codes = {w.code: w.message for w in vol.warnings}
    assert "gantry_tilt" in codes
    assert "15.00 degrees" in codes["gantry_tilt"]
    np.testing.assert_allclose(vol.direction, np.eye(3), atol=1e-9)  # orthogonal, unsheared
    assert vol.spacing[2] == pytest.approx(step, abs=1e-6)
    np.testing.assert_allclose(weighted_marker_lps(vol), truth["marker_lps"], atol=0.05)


def test_missing_slice_is_reported_and_grid_stays_uniform(tmp_path):
    origin, step = np.array([-10.0, -8.0, 30.0]), 2.0
    positions = [origin + [0, 0, k * step] for k in range(12) if k != 7]  # slice 7 missing
    truth = write_series(tmp_path, positions=positions, marker_ijk=(5, 7, 9))
    vol = load(tmp_path)
    message = {w.code: w.message for w in vol.warnings}["nonuniform_spacing"]
    assert "from 2.00 to 4.00 mm" in message and "1 slice(s) may be missing" in message
    assert f"between {42.0:.2f} mm and {46.0:.2f} mm" in message
    assert vol.shape[0] == 12  # the missing slice is filled in by interpolation
    assert vol.spacing[2] == pytest.approx(step)
    np.testing.assert_allclose(marker_lps(vol), truth["marker_lps"], atol=1e-3)


def test_duplicate_files_are_dropped_with_a_warning(tmp_path):
    truth = write_series(tmp_path)
    (tmp_path / "copy.dcm").write_bytes(truth["paths"][3].read_bytes())
    vol = load(tmp_path)
    assert vol.shape[0] == 12
    message = {w.code: w.message for w in vol.warnings}["duplicate_positions"]
    assert "copy.dcm" in message and "1 identical" in message


def test_mixed_sizes_in_one_series_are_split(tmp_path):
    truth = write_series(tmp_path / "a", shape_zyx=(6, 20, 24))
    write_series(tmp_path / "b", shape_zyx=(4, 16, 16), series_uid=truth["series_uid"],
                 study_uid=truth["study_uid"], origin=(0, 0, 100), marker_ijk=(3, 3, 1))
    series, _ = open_path(tmp_path)
    assert sorted(len(s.records) for s in series) == [4, 6]
    assert {s.key for s in series} == {truth["series_uid"] + "#1", truth["series_uid"] + "#2"}
    assert all(any(w.code == "split_series" for w in s.all_warnings) for s in series)
    vol = load(tmp_path, series_uid=truth["series_uid"] + "#2")
    assert vol.shape[0] in (4, 6)


def test_two_series_in_one_folder_loads_the_chosen_one(tmp_path):
    a = write_series(tmp_path, shape_zyx=(6, 20, 24), series_number=1)
    b = write_series(tmp_path / "sub", shape_zyx=(9, 20, 24), series_number=2, seed=3)
    assert load(tmp_path, series_uid=a["series_uid"]).shape[0] == 6
    largest = load(tmp_path)
    assert largest.shape[0] == 9 and largest.source.series_uid == b["series_uid"]
    assert any(w.code == "several_series" for w in largest.warnings)


def test_single_slice_uses_slice_thickness(tmp_path):
    write_series(tmp_path, shape_zyx=(1, 20, 24), marker_ijk=(5, 7, 0))
    vol = load(tmp_path)
    assert vol.shape == (1, 20, 24)
    assert vol.spacing[2] == pytest.approx(1.0)
