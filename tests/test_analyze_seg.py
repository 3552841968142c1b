"""`radsight analyze` on the demo study with a model built here: a DICOM SEG that references the
source images, names the algorithm, reads back identical with highdicom and passes dciodvfy."""

from __future__ import annotations

import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
import torch

from tests.conftest import need_tool
from tests.onnx_factory import Threshold3D, export
from viewer.demo import generate_demo
from viewer.dicom import load
from viewer.inference.analyze import analyze
from viewer.inference.registry import Registry
from viewer.store import Store


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo"), preset="small", n_visits=1, seed=5)


@pytest.fixture(scope="module")
def dense_model(tmp_path_factory):
    """Labels voxels above 0 HU (windowed -1000..1000 -> 0.5): bone, soft tissue, dense nodules."""
    return export(Threshold3D(), torch.zeros(1, 1, 16, 16, 16), tmp_path_factory.mktemp("m") / "dense-tissue",
                  {"task": "segmentation", "name": "Dense tissue (test)",
                   "preprocessing": [{"name": "reorient", "to": "LPS"}, {"name": "window", "low": -1000, "high": 1000}],
                   "inference": {"patch_size": [32, 64, 64], "batch_size": 2},
                   "output": {"name": "scores", "labels": [{"value": 1, "name": "Dense tissue",
                                                            "code": {"value": "85756007", "scheme": "SCT", "meaning": "Tissue"}}]}})


def test_analyze_writes_seg_that_reads_back(demo, dense_model, tmp_path):
    study = demo.visits[0].study_dir
    with Store(tmp_path / "db.sqlite3") as store:
        result = analyze(study, tmp_path / "out", store=store, registry=Registry([dense_model]), provider="cpu")
        stored = store.results(result["series_key"])
    assert result["models"][0]["id"] == "dense-tissue" and result["models"][0]["provider"] == "CPUExecutionProvider"
    assert stored and stored[0]["kind"] == "seg" and stored[0]["model_version"] == "0.1"
    (seg_path,) = result["outputs"]["seg"]
    seg = hd.seg.segread(seg_path)
    volume = load(study)
    # The algorithm is named, and every frame references a source image of the series.
    description = seg.SegmentSequence[0]
    assert description.SegmentAlgorithmName == "Dense tissue (test)"
    assert description.SegmentedPropertyTypeCodeSequence[0].CodeValue == "85756007"
    source_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in study.glob("*.dcm")}
    referenced = {ref.ReferencedSOPInstanceUID for ref in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced and referenced <= source_uids
    # Read back onto the study grid: identical to thresholding the CT at 0 HU.
    mask = np.zeros(volume.shape, bool)
    for frame, fg in zip(seg.pixel_array if seg.pixel_array.ndim == 3 else seg.pixel_array[None],
                         seg.PerFrameFunctionalGroupsSequence):
        position = [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient]
        k = int(round(volume.lps_to_index(position)[2]))
        mask[k] |= frame.astype(bool)
    assert np.mean(mask == (volume.voxels > 0)) > 0.999


def test_seg_passes_dciodvfy(demo, dense_model, tmp_path):
    tool = need_tool("dciodvfy")
    result = analyze(demo.visits[0].study_dir, tmp_path, registry=Registry([dense_model]), provider="cpu")
    proc = subprocess.run([tool, result["outputs"]["seg"][0]], capture_output=True, text=True, timeout=120)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)
