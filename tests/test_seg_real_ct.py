"""The bundled segmentation model on the shared real chest CT (../shared/testdata/real_ct): its
lung label united with its nodule label must cover the lung region the CT itself shows
(viewer.analysis.lung_region: aerated lung, airways and outside air removed, closed over the
pleura so that lesions on the wall are inside), scored by Dice.

These scans are validation data only: no model is trained or calibrated on them. The bundled
model is 1.1.0 (synthetic phantom only): a fine-tune with domain randomisation
(models/training/seg_randomisation.py, 600 iterations) raised four of the five series (LIDC 0.889,
B40f 0.847, B70f 0.846, COVID 0.923) but lowered the IBSI crop (0.818) and the nodule channel on the
held-out synthetic scans (70 % / 61 % of nodules >= 4 mm found instead of 78 % / 78 %), so it was
not shipped (models/training/README.md). The issue's goal is Dice >= 0.95 on each scan; what
1.1.0 reaches (ONNX Runtime CPU, 2026-12-07) is in THRESHOLDS, and each test requires that minus
0.01, so that a retrained model can only replace it by doing at least as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from viewer.analysis.lung_region import lung_region
from viewer.dicom import load
from viewer.inference.card import ModelCard
from viewer.inference.run import segment

pytestmark = pytest.mark.slow

DX = "real_ct/lung_pet_ct_dx_A0002/Lung_Dx-A0002/04-25-2007-NA-ThoraxAThoraxRoutine Adult-34834"
# scan folder -> (Dice the test requires, Dice measured with the bundled 1.1.0)
THRESHOLDS = {
    "real_ct/lidc_idri_0003_slab": (0.873, 0.883),
    f"{DX}/3.000000-ThoraxRoutine  8.0.0  B40f-10983": (0.786, 0.796),
    f"{DX}/2.000000-ThoraxRoutine  8.0.0  B70f-62919": (0.803, 0.813),
    "real_ct/ibsi1_nsclc_crop/dicom/image": (0.849, 0.859),
    "real_ct/covid_ricord_419639-000082/ct_scans": (0.892, 0.902),
}


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.from_file(Path(__file__).resolve().parents[1] / "models" / "radsight-demo-lung-nodule-seg" / "card.json")


@pytest.mark.parametrize("folder", list(THRESHOLDS))
def test_lung_label_covers_the_lung_region_of_the_real_scan(shared_testdata, card, folder):
    volume = load(shared_testdata / folder)
    region = lung_region(volume).region
    labels = segment(volume, card, provider="cpu").labels.voxels
    lung = labels > 0
    dice = 2 * np.sum(lung & region) / (lung.sum() + region.sum())
    required = THRESHOLDS[folder][0]
    ml = float(np.prod(volume.spacing)) / 1000.0
    assert dice >= required, (
        f"{folder}: Dice {dice:.3f} of the model's lung | nodule ({lung.sum() * ml:.0f} mL) against the "
        f"CT-derived lung region ({region.sum() * ml:.0f} mL) is below {required}; "
        f"{np.sum(lung & ~region) * ml:.0f} mL called lung outside the region, "
        f"{np.sum(region & ~lung) * ml:.0f} mL of the region missed: look at the slices with both contours")
