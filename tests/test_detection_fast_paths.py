"""Detection's fast paths give what the plain library calls give, on a real chest CT (the LIDC-IDRI
0003 slab): the blob filter's shared Gaussian passes and its peak test at the candidate voxels,
measure_at's morphology on the box where the answer can change, and the lung region's outside air
and lung size from one SimpleITK labelling. The speed of these paths is `radsight bench detection`'s
business; here only that they change nothing."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from viewer.analysis import candidates, lung_region, nodules
from viewer.dicom import load


@pytest.fixture(scope="module")
def slab(shared_testdata):
    return load(shared_testdata / "real_ct" / "lidc_idri_0003_slab")


def test_blob_filter_is_gaussian_filters_to_the_bit(slab):
    image = np.clip(slab.voxels[:, 100:400, 60:460].astype(np.float32), -1000.0, 200.0)
    spacing = np.array(slab.spacing)[::-1]
    for sigma_mm in (candidates.SCALES_MM[0], candidates.SCALES_MM[2]):
        sigma = sigma_mm / spacing
        reference = np.zeros(image.shape, np.float32)
        for axis in range(3):
            order = [0, 0, 0]
            order[axis] = 2
            term = ndimage.gaussian_filter(image, sigma, order=order, mode="nearest")
            term *= float(sigma[axis] ** 2)
            reference -= term
        assert np.array_equal(candidates._normalised_log(image, sigma), reference)
        above = np.argwhere(reference >= candidates.MIN_RESPONSE_HU)
        assert len(above) > 100
        peaks = reference == ndimage.maximum_filter(reference, size=3, mode="nearest")
        assert np.array_equal(candidates._local_maxima(reference, above), peaks[tuple(above.T)])


def test_morphology_on_a_box_is_the_whole_regions(slab):
    """Erosion and dilation through a distance map made on the box around what can change equal
    the map made on the whole region: for the lung's air (large), the dense structures, and a
    small blob (the LIDC nodule's region)."""
    roi = nodules._roi(slab, np.array([72.29, 76.90, -190.46]), 25.0)
    hu = roi.voxels
    spacing = np.array(roi.spacing)[::-1]
    blob = np.zeros(hu.shape, bool)
    blob[hu.shape[0] // 2, 25:35, 25:35] = True
    full = np.ones(hu.shape, bool)
    for mask in (hu < -700, hu > -550, blob & (hu > -550), full):
        signed = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
            nodules._image(mask, roi), insideIsPositive=True, squaredDistance=False, useImageSpacing=True))
        for mm in (float(spacing.max()), 3.0, 20.0):
            assert np.array_equal(nodules._erode(mask, mm, roi), signed >= mm - 1e-6)
            assert np.array_equal(nodules._dilate(mask, mm, roi), signed >= -mm - 1e-6)


def test_lungs_from_one_labelling_match_two_ndimage_labellings(slab):
    hu = slab.voxels.astype(np.float32)
    step = np.array(slab.spacing)[::-1]
    air = hu < lung_region.AIR_HU
    # The reference: outside air removed by one labelling, then the lungs kept by a second.
    labels, count = ndimage.label(air)
    index = np.arange(count + 1)
    share = ndimage.mean(hu < lung_region.OUTSIDE_AIR_HU, labels, index)
    border = np.unique(np.concatenate([labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()]))
    outside = np.zeros(count + 1, bool)
    outside[border] = share[border] > 0.5
    outside[0] = False
    inner = air & ~outside[labels]
    labels, count = ndimage.label(inner)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    ml = sizes * float(np.prod(step)) / 1000.0
    keep = (sizes >= lung_region.MIN_LUNG_FRACTION * sizes.max()) & (ml >= lung_region.MIN_LUNG_ML)
    reference = keep[labels]
    assert reference.sum() * float(np.prod(step)) / 1000.0 > 100  # the slab's lungs: well over 100 mL
    assert np.array_equal(lung_region._lungs_only(air, hu, step), reference)
