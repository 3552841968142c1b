"""The lung region built from the CT itself (viewer.analysis.lung_region), against the demo
generator's anatomy (a seed used nowhere else) and on real scans.

Synthetic: the region covers the true lungs (lungs, their vessels and nodules: Dice >= 0.9 with the
region; the region is closed over dents, so it is a little larger), holds every nodule centre,
juxtapleural ones included, and leaves out the airway lumen in the mediastinum and the heart.
Real: the annotated lesions' reference centres lie in the region on the scans where lung surrounds
them (LIDC nodule, Lung-PET-CT-Dx hilar mass), and a scan cropped to one hemithorax keeps its lung
(it reaches the crop's border, where air outside the body would otherwise be assumed).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from viewer.analysis.lung_region import lung_region
from viewer.demo import generate_demo
from viewer.demo.anatomy import LABEL_AIRWAY, LABEL_HEART, LABEL_LEFT_LUNG, LABEL_NODULE_BASE, LABEL_RIGHT_LUNG, LABEL_VESSEL
from viewer.dicom import load


def _inside(region, volume, point) -> bool:
    k, j, i = np.rint(volume.lps_to_index(point)[::-1]).astype(int)
    return bool(region[k, j, i])


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    demo = generate_demo(tmp_path_factory.mktemp("lung-region"), preset="small", n_visits=1, seed=142)
    volume, labels = load(demo.visits[0].study_dir), load(demo.visits[0].labels_path)
    nodules = [n for n in demo.ground_truth()["visits"][0]["nodules"] if n["present"]]
    return volume, labels.voxels, nodules


def test_covers_the_lungs_and_their_nodules_not_the_mediastinum(phantom):
    volume, labels, nodules = phantom
    lungs = lung_region(volume)
    truth = np.isin(labels, [LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG, LABEL_VESSEL]) | (labels >= LABEL_NODULE_BASE)
    dice = 2 * np.sum(truth & lungs.region) / (truth.sum() + lungs.region.sum())
    assert dice >= 0.9, dice
    assert any(n["juxtapleural"] for n in nodules)
    for n in nodules:
        assert _inside(lungs.region, volume, n["centre_lps_mm"]), n
    heart = labels == LABEL_HEART
    assert np.sum(heart & lungs.region) <= 0.05 * heart.sum()
    # The trachea and main bronchi (airway lumen more than 10 mm from the lungs) are not lung.
    from_lung = ndimage.distance_transform_edt(~np.isin(labels, [LABEL_LEFT_LUNG, LABEL_RIGHT_LUNG]),
                                               sampling=np.array(volume.spacing)[::-1])
    trachea = (labels == LABEL_AIRWAY) & (from_lung > 10.0)
    assert trachea.any() and np.sum(trachea & lungs.air) <= 0.1 * trachea.sum()
    left = lungs.midline_x_mm
    assert min(n["centre_lps_mm"][0] for n in nodules) < left < max(n["centre_lps_mm"][0] for n in nodules)


@pytest.mark.parametrize("folder, point", [
    ("lidc_idri_0003_slab", (72.29, 76.90, -190.46)),  # LUNA16 centre
    ("lung_pet_ct_dx_A0002/Lung_Dx-A0002/04-25-2007-NA-ThoraxAThoraxRoutine Adult-34834/"
     "3.000000-ThoraxRoutine  8.0.0  B40f-10983", (-59.1, -93.8, 176.0)),  # a box centre
])
def test_real_lesions_lie_in_the_region(shared_testdata, folder, point):
    volume = load(shared_testdata / "real_ct" / folder)
    assert _inside(lung_region(volume).region, volume, point)


def test_a_crop_of_one_hemithorax_keeps_its_lung(shared_testdata):
    volume = load(shared_testdata / "real_ct" / "ibsi1_nsclc_crop" / "dicom" / "image")
    lungs = lung_region(volume)
    assert lungs.air_ml >= 500.0  # the crop's aerated lung (about 1 L), which touches the crop's border
    border = np.concatenate([lungs.air[:, [0, -1], :].ravel(), lungs.air[:, :, [0, -1]].ravel()])
    assert border.any()
