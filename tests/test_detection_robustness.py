"""Detection on one real scan under the acquisition changes a hospital's scans bring: patient
orientation (a prone or feet-first series stores its voxels in another order, with the geometry in
the affine) and noise (low dose); thick slices (8 mm) and a sharp kernel (B70f) are the
Lung-PET-CT-Dx scan's, in test_real_ct_detection.py. The scan is the LIDC-IDRI-0003 slab
(../shared/testdata/real_ct) with its 21.5 mm nodule (LUNA16 centre (72.29, 76.90, -190.46)); the
detection runs without models (the CT-derived lung region and the blob detector), as it must when
no model applies.

Tolerances: the nodule is found each time (centre within the LUNA16 radius), the same nodule in
any voxel order (centre within 1 mm, mean diameter within 1 mm: only the voxel grid's arrangement
changed), and at most 4 false positives per scan.
"""

from __future__ import annotations

import numpy as np
import pytest

from viewer.analysis.detection import detect_nodules
from viewer.core.volume import Volume
from viewer.dicom import load

LUNA_CENTRE = np.array([72.29, 76.90, -190.46])
LUNA_DIAMETER_MM = 21.45
MAX_FALSE_POSITIVES = 4


@pytest.fixture(scope="module")
def slab(shared_testdata) -> Volume:
    return load(shared_testdata / "real_ct" / "lidc_idri_0003_slab")


def _flipped(volume: Volume, axes_zyx: tuple[int, ...]) -> Volume:
    """The same scan with its voxels stored in reverse along the given array axes; the affine
    changes so every voxel keeps its LPS position (what a prone or feet-first series looks like
    to the reader code)."""
    voxels = np.flip(volume.voxels, axis=axes_zyx).copy()
    affine = np.array(volume.affine, float)
    for axis in axes_zyx:
        column = 2 - axis  # array axis (z, y, x) -> affine column (i=x, j=y, k=z)
        affine[:3, 3] += (volume.shape[axis] - 1) * affine[:3, column]
        affine[:3, column] *= -1
    return Volume(voxels, affine, volume.frame_of_reference_uid, volume.source, unit=volume.unit)


def _the_nodule(detections):
    hits = [d for d in detections if np.linalg.norm(np.subtract(d.measurement.centre_lps_mm, LUNA_CENTRE))
            <= LUNA_DIAMETER_MM / 2]
    assert len(hits) == 1, [(d.measurement.centre_lps_mm, d.measurement.mean_diameter_mm) for d in detections]
    assert len(detections) - 1 <= MAX_FALSE_POSITIVES
    return hits[0].measurement


@pytest.fixture(scope="module")
def reference(slab):
    return _the_nodule(detect_nodules(slab))


@pytest.mark.parametrize("axes", [(2,), (1, 2), (0,), (0, 1, 2)],
                         ids=["left-right", "prone (x and y)", "feet-first (z)", "all three"])
def test_same_nodule_in_any_voxel_order(slab, reference, axes):
    m = _the_nodule(detect_nodules(_flipped(slab, axes)))
    assert np.linalg.norm(np.subtract(m.centre_lps_mm, reference.centre_lps_mm)) <= 1.0
    assert abs(m.mean_diameter_mm - reference.mean_diameter_mm) <= 1.0


def test_found_in_low_dose_noise(slab, reference):
    rng = np.random.default_rng(14)
    noisy = slab.with_voxels((slab.voxels + rng.normal(0.0, 40.0, slab.shape)).astype(np.int16))
    m = _the_nodule(detect_nodules(noisy))
    assert abs(m.mean_diameter_mm - reference.mean_diameter_mm) <= 3.0


@pytest.mark.slow
def test_detection_benchmark_reports_against_its_references(shared_testdata):
    """`radsight bench detection` times detection against the load and the segmentation model of
    the same run; an 11-slice slab is not scaled to 300 slices (its candidates do not thin out)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([str(Path(sys.executable).parent / "radsight"), "bench", "detection",
                           str(shared_testdata / "real_ct" / "lidc_idri_0003_slab"), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["shape_zyx"] == [11, 512, 512] and report["detections"] >= 1
    assert all(report["seconds"][k] > 0 for k in ("load", "segmentation", "detection"))
    stages = report["stage_seconds"]
    assert all(stages[k] > 0 for k in ("lung region", "masses", "candidates", "measurement and checks"))
    # The stages are parts of detection, not extra time (the masses run beside the candidates, the
    # classifier within the measurement).
    assert sum(v for k, v in stages.items() if k not in ("type classifier", "masses")) <= \
        report["seconds"]["detection"] + 0.05
    assert "detection stages: model masks" in report["text"] and "lung region" in report["text"]
    assert report["seconds_per_300_slices"] is None and "too few to scale" in report["text"]
    assert "x the segmentation model" in report["text"]
