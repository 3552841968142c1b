"""Multi-frame, projection, MONOCHROME1 and NIfTI inputs (shared data: dcmqi BSD-3, highdicom MIT)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from tests.dicom_factory import make_slice_dataset, write_series
from viewer.dicom import load


def test_legacy_multiframe_equals_single_frame_series(shared_testdata):
    base = shared_testdata / "seg_sr" / "dcmqi" / "23x38x3"
    single = load(base / "image")
    multi = load(base / "multiframe")
    np.testing.assert_allclose(multi.affine, single.affine, atol=1e-4)
    np.testing.assert_array_equal(multi.voxels, single.voxels)
    assert single.shape == (3, 38, 23)


def test_enhanced_ct_from_highdicom_equals_its_single_frames(tmp_path):
    """Per-frame Functional Groups written by highdicom's legacy converter, frames shuffled."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage
    from pydicom import dcmread

    truth = write_series(tmp_path / "single", shape_zyx=(7, 20, 24), orientation=(1, 0, 0, 0, 0, -1),
                         origin=(-5, 12, 30), step=1.25)
    datasets = [dcmread(p) for p in truth["paths"]]
    np.random.default_rng(4).shuffle(datasets)
    enhanced = LegacyConvertedEnhancedCTImage(datasets, series_instance_uid="1.2.826.0.1.3680043.8.498.1",
                                              series_number=9, sop_instance_uid="1.2.826.0.1.3680043.8.498.2",
                                              instance_number=1)
    (tmp_path / "mf").mkdir()
    enhanced.save_as(tmp_path / "mf" / "enhanced.dcm")
    single = load(tmp_path / "single")
    multi = load(tmp_path / "mf")
    assert "PerFrameFunctionalGroupsSequence" in dcmread(tmp_path / "mf" / "enhanced.dcm", stop_before_pixels=True)
    np.testing.assert_allclose(multi.affine, single.affine, atol=1e-4)
    np.testing.assert_array_equal(multi.voxels, single.voxels)


def test_dx_projection_image(shared_testdata):
    vol = load(shared_testdata / "seg_sr" / "highdicom" / "dx_image.dcm")
    assert vol.shape[0] == 1
    codes = {w.code for w in vol.warnings}
    assert "no_patient_geometry" in codes
    assert vol.frame_of_reference_uid is None or isinstance(vol.frame_of_reference_uid, str)


def test_monochrome1_keeps_values_and_flags_display(tmp_path):
    pixels = np.arange(20 * 24, dtype=np.int16).reshape(20, 24)
    ds = make_slice_dataset(pixels, (0, 0, 0), (1, 0, 0, 0, 1, 0), (0.5, 0.5), study_uid="1.2.3", series_uid="1.2.3.4",
                            for_uid="1.2.3.5", instance_number=1, photometric="MONOCHROME1", intercept=0)
    ds.save_as(tmp_path / "m1.dcm", enforce_file_format=True)
    vol = load(tmp_path / "m1.dcm")
    assert vol.display.invert_grey is True
    np.testing.assert_array_equal(vol.voxels[0], pixels)  # data untouched; the renderer inverts


def test_float_rescale_gives_float_values(tmp_path):
    write_series(tmp_path, shape_zyx=(3, 8, 8), marker_ijk=(1, 1, 1))
    from pydicom import dcmread

    for p in sorted(tmp_path.iterdir()):
        ds = dcmread(p)
        ds.RescaleSlope = "0.5"
        ds.save_as(p)
    vol = load(tmp_path)
    assert vol.voxels.dtype == np.float32
    assert vol.voxels.max() == pytest.approx((1000 + 1024) * 0.5 - 1024)


def test_nifti_roundtrip_keeps_lps_geometry(tmp_path):
    write_series(tmp_path / "dcm", orientation=(0, 1, 0, 0, 0, -1), origin=(20, -30, 40), step=1.5)
    vol = load(tmp_path / "dcm")
    image = sitk.GetImageFromArray(vol.voxels)
    image.SetOrigin(vol.origin)
    image.SetSpacing(vol.spacing)
    image.SetDirection(vol.direction.flatten())
    sitk.WriteImage(image, str(tmp_path / "v.nii.gz"))  # NIfTI stores RAS; ITK converts
    back = load(tmp_path / "v.nii.gz")
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)
    np.testing.assert_array_equal(back.voxels, vol.voxels)
