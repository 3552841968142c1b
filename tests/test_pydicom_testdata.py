"""Transfer syntaxes decoded from the files the package registries serve (pydicom's own test files
and the pydicom-data package, the `test` extra), so a fresh clone without ../shared still checks
the decoders: each lossless encoding must give the uncompressed file's voxels exactly."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from viewer.dicom import load


def _testdata(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.fail(f"{name} is missing from pydicom's test data: install the test extra (pip install -e '.[test]'), "
                    "which brings pydicom-data")
    return path


# (reference, [same pixels in another transfer syntax]); MR_small_* ship in pydicom's wheel,
# emri_small_* (10 frames) and 693_* (a 512x512 CT) in pydicom-data.
CASES = {
    "MR_small.dcm": ["MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_RLE.dcm",
                     "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"],
    "emri_small.dcm": ["emri_small_big_endian.dcm", "emri_small_RLE.dcm", "emri_small_jpeg_2k_lossless.dcm"],
    "693_UNCR.dcm": ["693_J2KR.dcm"],
}


@pytest.mark.parametrize("reference,other", [(ref, other) for ref, others in CASES.items() for other in others])
def test_lossless_syntax_gives_the_uncompressed_voxels(reference, other):
    expected = load(_testdata(reference))
    got = load(_testdata(other))
    assert got.voxels.shape == expected.voxels.shape
    np.testing.assert_array_equal(got.voxels, expected.voxels)
    np.testing.assert_allclose(got.affine, expected.affine)


def test_big_endian_is_not_byte_swapped():
    """Explicit VR Big Endian once came out byte-swapped when no rescale applied (MR): check values,
    not only equality with another file."""
    vol = load(_testdata("MR_small_bigendian.dcm"))
    assert vol.voxels.min() >= 0 and vol.voxels.max() < 4096, (vol.voxels.min(), vol.voxels.max())
