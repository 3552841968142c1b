"""The demo studies through RadSight's own reader: geometry agrees with SimpleITK within 1e-3 mm,
voxels are identical, ground-truth nodule centres fall in their labels, and `radsight demo`
prints its outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from viewer.demo import generate_demo
from viewer.dicom import load


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo"), preset="small", n_visits=3, seed=3)


def test_every_visit_agrees_with_simpleitk(demo):
    for visit in demo.visits:
        vol = load(visit.study_dir)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(visit.study_dir)))
        image = reader.Execute()
        np.testing.assert_allclose(vol.origin, image.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(vol.spacing, image.GetSpacing(), atol=1e-3)
        np.testing.assert_allclose(vol.direction.flatten(), image.GetDirection(), atol=1e-6)
        np.testing.assert_array_equal(vol.voxels, sitk.GetArrayFromImage(image))
        assert vol.warnings == ()
        assert vol.unit == "[hnsf'U]"


def test_ground_truth_centres_fall_in_their_labels(demo):
    truth = demo.ground_truth()
    for n_visit, visit in enumerate(demo.visits):
        vol = load(visit.study_dir)
        labels = load(visit.labels_path)
        np.testing.assert_allclose(labels.affine, vol.affine, atol=1e-3)
        present = [n for n in truth["visits"][n_visit]["nodules"] if n["present"]]
        assert present
        for nodule in present:
            i, j, k = np.rint(vol.lps_to_index(nodule["centre_lps_mm"])).astype(int)
            label = int(labels.voxels[k, j, i])
            assert label >= 10, (visit.study_dir, nodule["id"], label)
            assert vol.voxels[k, j, i] > -750  # denser than aerated lung (~-850); ground glass is ~-600


def test_demo_command_lists_outputs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "demo", "--preset", "small", "--out", str(tmp_path / "d"),
                           "--no-gui", "--json", "--quiet"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert len(data["studies"]) == 3
    for png in data["outputs"]["snapshots"]:
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert all(s["modality"] == "CT" for s in data["series"])
    # The bundled classifier explained at every nodule of the latest visit: stored Parametric Maps
    # whose relevance peaks within the crop (32 mm) around each nodule.
    truth = json.loads(open(data["ground_truth"]).read())
    present = [n for n in truth["visits"][-1]["nodules"] if n["present"]]
    assert len(data["outputs"]["heatmaps"]) == len(present) == len(data["explanations"])
    from viewer.dicom.pmap import read_parametric_map

    for nodule, explanation in zip(present, data["explanations"]):
        values, description = read_parametric_map(explanation["path"])
        assert description.startswith("Grad-CAM") and explanation["method"] == "Grad-CAM"
        assert np.abs(np.subtract(explanation["peak_lps_mm"], nodule["centre_lps_mm"])).max() <= 16.0
        assert values.voxels.max() == 1.0
    assert any(p.endswith("explanation-axial.png") for p in data["outputs"]["snapshots"])
