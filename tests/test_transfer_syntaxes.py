"""Every transfer syntax in shared/testdata/transfer_syntaxes decodes (cornerstone3D test images,
MIT, Open Health Imaging Foundation): lossless ones identical to the uncompressed file, lossy ones
close to it through their own rescale values."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from viewer.cli import main
from viewer.dicom import load

LOSSLESS = ["BigEndianExplicit", "DeflatedExplicitVRLittleEndian", "JPEG2000LosslessOnly", "JPEGLSLossless",
            "JPEGProcess14SV1", "JPEGProcess14TransferSyntax", "LittleEndianExplicit", "LittleEndianImplicit",
            "RLELossless"]
# Lossy: (largest, mean) absolute error allowed against the original, in HU. JPEG baseline is
# 8-bit: its rescale slope is ~17 HU per grey level, so a quantisation offset of 1-2 levels over
# the whole image is expected (measured: max 64, mean 20). The 12-bit processes use slope ~2 and
# lose detail at edges (measured: max 36, mean 3.8); JPEG 2000 lossy max 5; JPEG-LS near-lossless 1.
LOSSY = {"JPEGProcess1TransferSyntax": (80, 25), "JPEGProcess2_4": (40, 5), "JPEGProcess6_8": (40, 5),
         "JPEGProcess10_12": (40, 5), "JPEG2000TransferSyntax": (10, 1), "JPEGLSLossy": (2, 1)}


@pytest.fixture(scope="module")
def folder(shared_testdata):
    return shared_testdata / "transfer_syntaxes"


@pytest.fixture(scope="module")
def reference(folder):
    return load(folder / "CTImage.dcm")


def _file(folder, key):
    matches = [p for p in folder.iterdir() if f"_{key}" in p.name]
    assert len(matches) == 1, (key, matches)
    return matches[0]


@pytest.mark.parametrize("key", LOSSLESS)
def test_lossless_decodes_identical(folder, reference, key):
    vol = load(_file(folder, key))
    np.testing.assert_array_equal(vol.voxels, reference.voxels)
    np.testing.assert_allclose(vol.affine, reference.affine)


@pytest.mark.parametrize("key", sorted(LOSSY))
def test_lossy_decodes_close_with_own_rescale(folder, reference, key):
    vol = load(_file(folder, key))
    diff = np.abs(vol.voxels.astype(np.float64) - reference.voxels)
    max_err, mean_err = LOSSY[key]
    assert diff.max() <= max_err and diff.mean() <= mean_err, (diff.max(), diff.mean())


def test_reference_values_are_hu(reference):
    """Air outside the body about -1000 HU, the GE scanner's padding -3024 outside the FOV."""
    v = reference.voxels
    assert v.dtype == np.int16
    assert v.min() == -3024
    corner_air = v[0, 60:80, 250:260]  # in the FOV, above the patient
    assert -1030 < corner_air.mean() < -950


def test_j2k_series_geometry_matches_simpleitk(folder):
    for name in ("CT1_J2KR", "CT2_J2KR", "CTImage.dcm"):
        vol = load(folder / name)
        image = sitk.ReadImage(str(folder / name))
        np.testing.assert_allclose(vol.origin, image.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(vol.spacing[:2], image.GetSpacing()[:2], atol=1e-3)
        np.testing.assert_allclose(vol.direction.flatten(), image.GetDirection(), atol=1e-6)
        np.testing.assert_array_equal(vol.voxels, sitk.GetArrayFromImage(image))


def test_info_lists_all_and_only_the_licence_as_unreadable(folder, capsys):
    import json

    assert main(["info", str(folder), "--json", "--no-index"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["file"].rsplit("/", 1)[-1] for p in data["unreadable"]] == ["LICENSE"]
    frames = sum(s["frame_count"] for s in data["series"])
    # 16 variants of one instance collapse into one series (same UID and position) with a
    # duplicate warning; the two J2K slices form their own.
    assert frames >= 2
    assert any(w["code"] == "duplicate_positions" for s in data["series"] for w in s["warnings"])
