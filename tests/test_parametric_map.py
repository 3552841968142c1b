"""`radsight explain` end to end: DICOM written here, a classifier installed like a user would,
the map written as a DICOM Parametric Map, read back at the same LPS points, validated by
dciodvfy, and recorded in the store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest
import torch

from tests.conftest import need_tool
from tests.dicom_factory import write_blob_ct
from tests.onnx_factory import BlobNet, export
from viewer.dicom import load
from viewer.dicom.pmap import read_parametric_map
from viewer.inference.registry import user_models_dir
from viewer.store import Store

CENTRE = np.array([-20.0, 15.0, -40.0])


@pytest.fixture()
def study(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    write_blob_ct(folder, CENTRE)
    card = export(BlobNet(3), torch.zeros(1, 1, 32, 32, 32), tmp_path / "blob-classifier",
                  {"task": "classification", "name": "Blob finder", "crop_mm": [32, 32, 32],
                   "modality": ["CT"],
                   "preprocessing": [{"name": "reorient"}, {"name": "resample", "spacing_mm": [1.0, 1.0, 1.0]},
                                     {"name": "window", "low": -1000, "high": 400}],
                   "input": {"name": "image", "spatial_size": [32, 32, 32]},
                   "output": {"name": "scores", "labels": [{"value": 0, "name": "blob"}, {"value": 1, "name": "none"}]}},
                  dynamic=False)
    shutil.copytree(card.card_path.parent, user_models_dir() / "blob-classifier", dirs_exist_ok=True)
    return folder


def radsight(*args):
    return subprocess.run([sys.executable, "-m", "viewer.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def values_at(volume, points):
    ijk = np.rint(volume.lps_to_index(points)).astype(int)
    return volume.voxels[ijk[:, 2], ijk[:, 1], ijk[:, 0]]


def test_explain_writes_a_valid_parametric_map_that_reads_back(study, tmp_path):
    at = CENTRE + [6.0, 0.0, -3.0]
    out = tmp_path / "map.dcm"
    run = radsight("explain", study, "--model", "blob-classifier", "--at", ",".join(map(str, at)), "--out", out, "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["method"] == "Grad-CAM" and data["target"] == "blob" and data["probability"] > 0.9
    assert data["model"] == {"id": "blob-classifier", "version": "0.1", "provider": "CPUExecutionProvider"}
    assert np.linalg.norm(np.subtract(data["peak_lps_mm"], CENTRE)) <= 4.0
    assert data["path"] == str(out)

    ds = pydicom.dcmread(out)
    source = load(study)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map Storage
    assert "FloatPixelData" in ds and ds.StudyInstanceUID == source.source.study_uid
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.source.series_uid
    assert ds.FrameOfReferenceUID == source.frame_of_reference_uid
    assert "Grad-CAM" in ds.ContentDescription and "blob-classifier" in ds.ContentDescription

    # Same relevance at the same LPS points: the map keeps its crop position through DICOM.
    values, description = read_parametric_map(out)
    assert description == ds.ContentDescription
    from viewer.inference.explain import explain
    from viewer.inference.registry import discover
    original = explain(source, discover().get("blob-classifier"), at, provider="cpu").values
    nz, ny, nx = original.shape
    grid = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1).reshape(-1, 3)
    points = original.index_to_lps(grid)
    assert np.allclose(values_at(values, points), values_at(original, points), atol=1e-6)

    with Store() as store:
        results = store.results(data["series_key"])
    assert [(r["kind"], r["model_id"], r["summary"]["method"]) for r in results] == [("heatmap", "blob-classifier", "Grad-CAM")]


@pytest.mark.external
def test_dciodvfy_finds_no_error_in_the_parametric_map(study, tmp_path):
    need_tool("dciodvfy")
    out = tmp_path / "map.dcm"
    run = radsight("explain", study, "--model", "blob-classifier", "--at", ",".join(map(str, CENTRE)), "--out", out)
    assert run.returncode == 0, run.stderr
    check = subprocess.run(["dciodvfy", str(out)], capture_output=True, text=True)
    report = check.stdout + check.stderr
    assert "ParametricMap" in report
    assert not [line for line in report.splitlines() if line.startswith("Error")], report


def test_palette_variant_keeps_values_to_a_4095th(study, tmp_path):
    at = CENTRE + [0.0, -5.0, 0.0]
    float_run = radsight("explain", study, "--model", "blob-classifier", "--at", ",".join(map(str, at)),
                         "--out", tmp_path / "f.dcm", "--method", "occlusion")
    palette_run = radsight("explain", study, "--model", "blob-classifier", "--at", ",".join(map(str, at)),
                           "--out", tmp_path / "p.dcm", "--method", "occlusion", "--palette", "inferno", "--json")
    assert float_run.returncode == 0 and palette_run.returncode == 0, palette_run.stderr
    assert "Occlusion" in float_run.stdout
    ds = pydicom.dcmread(tmp_path / "p.dcm")
    assert ds.PixelPresentation == "COLOR_RANGE" and ds.BitsStored == 16 and "PixelData" in ds
    assert len(ds.RedPaletteColorLookupTableData) == 2 * 4096  # 16-bit entries
    exact, _ = read_parametric_map(tmp_path / "f.dcm")
    rounded, _ = read_parametric_map(tmp_path / "p.dcm")
    assert np.allclose(rounded.voxels, exact.voxels, atol=0.5 / 4095 + 1e-6) and exact.voxels.max() == 1.0
    with Store() as store:  # two maps of the same model at the same point: the newer replaces the older
        kept = store.results(json.loads(palette_run.stdout)["series_key"])
    assert [r["path"] for r in kept if r["kind"] == "heatmap"] == [str(tmp_path / "p.dcm")]


def test_bad_requests_give_one_line_errors(study, tmp_path):
    run = radsight("explain", study, "--model", "no-such-model", "--at", "0,0,0", "--out", tmp_path / "x.dcm")
    assert run.returncode == 2 and "no model with id 'no-such-model'" in run.stderr and run.stderr.count("\n") == 1
    run = radsight("explain", study, "--model", "blob-classifier", "--at", "900,0,0", "--out", tmp_path / "x.dcm")
    assert run.returncode == 2 and "outside the volume" in run.stderr
    run = radsight("explain", study, "--model", "blob-classifier", "--at", "1,2", "--out", tmp_path / "x.dcm")
    assert run.returncode == 2 and "--at needs three numbers" in run.stderr
    assert not (tmp_path / "x.dcm").exists()
