"""Models built here with torch and exported to ONNX, with other conventions (channels first/last,
logits or probabilities, dynamic or fixed axes, 2-D or 3-D), run through the same card path; plus
the third-party niivue model from shared/testdata (BSD-2) and bad models and cards."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from viewer.core.volume import SourceIdentity, Volume
from tests.onnx_factory import CentreBrightness, Threshold3D, export
from viewer.inference.card import ModelCard, ModelCardError, sha256_of
from viewer.inference.run import InferenceError, classify, segment

torch.set_num_threads(1)


WINDOW = [{"name": "reorient", "to": "LPS"}, {"name": "window", "low": -1000, "high": 1000}]
SEG_LABELS = {"labels": [{"value": 1, "name": "bright"}]}


@pytest.fixture(scope="module")
def ct():
    """Anisotropic, oblique-free CT with a bright ellipsoid (> 0 HU) in air-like background."""
    z, y, x = np.mgrid[:24, :40, :36]
    inside = ((x - 18) / 10.0) ** 2 + ((y - 20) / 12.0) ** 2 + ((z - 12) / 6.0) ** 2 < 1
    voxels = np.where(inside, 300, -800).astype(np.int16)
    affine = np.diag([0.8, 0.7, 2.0, 1.0])
    affine[:3, 3] = (-10, 5, 40)
    return Volume(voxels, affine, source=SourceIdentity(modality="CT"), unit="[hnsf'U]")


def agreement(mask, ct):
    return float(np.mean((mask.labels.voxels == 1) == (ct.voxels > 0)))


def test_3d_logits_dynamic_axes_with_resampling(tmp_path, ct):
    card = export(Threshold3D(), torch.zeros(1, 1, 16, 16, 16), tmp_path / "seg3d",
                  {"task": "segmentation", "preprocessing": WINDOW + [{"name": "resample", "spacing_mm": [1.0, 1.0, 1.0]}],
                   "inference": {"patch_size": [16, 16, 16], "overlap": 0.25, "batch_size": 2},
                   "output": {"name": "scores", "kind": "logits", **SEG_LABELS}})
    mask = segment(ct, card, provider="cpu")
    assert mask.labels.shape == ct.shape and np.allclose(mask.labels.affine, ct.affine)
    assert agreement(mask, ct) > 0.98  # only the resampled boundary may differ
    assert mask.model.id == "seg3d" and mask.provider == "CPUExecutionProvider"
    assert mask.label_confidence(1) > 0.9


def test_channels_last_probabilities_fixed_size(tmp_path, ct):
    card = export(Threshold3D(channels_last=True, probabilities=True), torch.zeros(1, 16, 16, 16, 1),
                  tmp_path / "seg-cl", {"task": "segmentation", "preprocessing": WINDOW,
                                        "input": {"name": "image", "axes": "NDHWC", "spatial_size": [16, 16, 16]},
                                        "output": {"name": "scores", "kind": "probabilities", **SEG_LABELS}},
                  dynamic=False)
    assert agreement(segment(ct, card, provider="cpu"), ct) == 1.0


def test_2d_model_slice_by_slice(tmp_path, ct):
    card = export(Threshold3D(dims=2), torch.zeros(1, 1, 32, 32), tmp_path / "seg2d",
                  {"task": "segmentation", "preprocessing": WINDOW, "input": {"name": "image", "axes": "NCHW"},
                   "inference": {"patch_size": [32, 32]}, "output": {"name": "scores", **SEG_LABELS}})
    assert agreement(segment(ct, card, provider="cpu"), ct) == 1.0


def test_classifier_on_a_crop_around_a_point(tmp_path, ct):
    card = export(CentreBrightness(), torch.zeros(1, 1, 16, 16, 16), tmp_path / "cls",
                  {"task": "classification", "crop_mm": [16, 16, 16],
                   "preprocessing": WINDOW + [{"name": "resample", "spacing_mm": [1.0, 1.0, 1.0]}],
                   "input": {"name": "image", "spatial_size": [16, 16, 16]},
                   "output": {"name": "scores", "labels": [{"value": 0, "name": "bright"}, {"value": 1, "name": "dark"}]},
                   "explain": {"target_layer": "features"}}, dynamic=False)
    centre = ct.index_to_lps([18, 20, 12])
    inside = classify(ct, card, centre, provider="cpu")
    outside = classify(ct, card, ct.index_to_lps([2, 2, 2]), provider="cpu")
    assert inside.best.name == "bright" and inside.confidence > 0.99
    assert outside.best.name == "dark"
    assert abs(sum(inside.probabilities) - 1) < 1e-6
    with pytest.raises(InferenceError, match="outside the volume"):
        classify(ct, card, (500.0, 500.0, 500.0), provider="cpu")


@pytest.mark.slow
def test_third_party_niivue_model_runs_through_a_card(tmp_path, shared_testdata):
    """niivue brainchop GM/WM model (input [N,1,256,256,256]) on a small synthetic 'MR'."""
    import shutil

    folder = tmp_path / "niivue"
    folder.mkdir()
    shutil.copy(shared_testdata / "onnx" / "niivue_brainchop_gm_wm.onnx", folder / "model.onnx")
    card = {"id": "niivue-gmwm", "version": "1", "task": "segmentation", "file": "model.onnx",
            "sha256": sha256_of(folder / "model.onnx"), "intended_use": "test of third-party models", "modality": ["MR"],
            "input": {"name": "input", "axes": "NCDHW", "channels": 1, "spatial_size": [256, 256, 256]},
            "preprocessing": [{"name": "reorient", "to": "LPS"}, {"name": "resample", "spacing_mm": [1.0, 1.0, 1.0]},
                              {"name": "window", "low": 0, "high": 1000}],
            "inference": {"patch_size": [256, 256, 256], "batch_size": 1},
            "output": {"name": "output", "kind": "logits", "labels": [{"value": 1, "name": "grey matter"},
                                                                       {"value": 2, "name": "white matter"}]}}
    (folder / "card.json").write_text(json.dumps(card))
    z, y, x = np.mgrid[:40, :48, :48]
    voxels = (600 + 300 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.int16)
    mr = Volume(voxels, np.diag([1.2, 1.2, 1.5, 1.0]), source=SourceIdentity(modality="MR"))
    mask = segment(mr, ModelCard.from_file(folder / "card.json"), provider="cpu")
    assert mask.labels.shape == mr.shape and set(np.unique(mask.labels.voxels)) <= {0, 1, 2}
    with pytest.raises(InferenceError, match="is for MR studies"):
        segment(Volume(voxels, np.eye(4), source=SourceIdentity(modality="CT")),
                ModelCard.from_file(folder / "card.json"), provider="cpu")


def test_bad_models_and_cards_name_the_problem(tmp_path, ct):
    card = export(Threshold3D(), torch.zeros(1, 1, 8, 8, 8), tmp_path / "ok",
                  {"task": "segmentation", "preprocessing": WINDOW, "inference": {"patch_size": [8, 8, 8]},
                   "output": {"name": "scores", **SEG_LABELS}})
    # Hash mismatch: the file changed after the card was written.
    data = (tmp_path / "ok" / "model.onnx").read_bytes()
    (tmp_path / "ok" / "model.onnx").write_bytes(data + b"\0")
    with pytest.raises(ModelCardError, match="sha256 .* does not match"):
        segment(ct, card, provider="cpu")
    # Corrupt ONNX whose hash is right.
    (tmp_path / "ok" / "model.onnx").write_bytes(b"not an onnx model")
    raw = json.loads((tmp_path / "ok" / "card.json").read_text())
    raw["sha256"] = sha256_of(tmp_path / "ok" / "model.onnx")
    (tmp_path / "ok" / "card.json").write_text(json.dumps(raw))
    with pytest.raises(ModelCardError, match="ONNX Runtime cannot load"):
        segment(ct, ModelCard.from_file(tmp_path / "ok" / "card.json"), provider="cpu")
    # A card naming an input the model does not have.
    card2 = export(Threshold3D(), torch.zeros(1, 1, 8, 8, 8), tmp_path / "names",
                   {"task": "segmentation", "preprocessing": WINDOW, "input": {"name": "pixels"},
                    "inference": {"patch_size": [8, 8, 8]}, "output": {"name": "scores", **SEG_LABELS}})
    with pytest.raises(ModelCardError, match="input 'pixels' is not in model.onnx"):
        segment(ct, card2, provider="cpu")
    # Card validation: unknown transform, missing field.
    bad = dict(raw, preprocessing=[{"name": "eval", "code": "1+1"}])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ModelCardError, match=r"bad.json: preprocessing\[0\]: unknown transform 'eval'"):
        ModelCard.from_file(tmp_path / "bad.json")
    (tmp_path / "bad2.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "task"}))
    with pytest.raises(ModelCardError, match="missing field 'task'"):
        ModelCard.from_file(tmp_path / "bad2.json")


def test_models_cli_validate_add_list(tmp_path):
    export(Threshold3D(), torch.zeros(1, 1, 8, 8, 8), tmp_path / "mymodel",
           {"task": "segmentation", "preprocessing": WINDOW, "inference": {"patch_size": [8, 8, 8]},
            "output": {"name": "scores", **SEG_LABELS}})
    import os

    env = dict(os.environ, RADSIGHT_DATA_DIR=str(tmp_path / "data"))  # its own user models folder
    run = lambda *a: subprocess.run([sys.executable, "-m", "viewer.cli", "models", *a], capture_output=True,  # noqa: E731
                                    text=True, timeout=120, env=env)
    assert run("validate", str(tmp_path / "mymodel")).returncode == 0
    assert run("add", str(tmp_path / "mymodel")).returncode == 0
    listed = json.loads(run("list", "--json").stdout)
    mine = [m for m in listed if m["id"] == "mymodel"]
    assert mine and mine[0]["provider"] in ("CPUExecutionProvider", "CUDAExecutionProvider")
    again = run("add", str(tmp_path / "mymodel"))
    assert again.returncode == 2 and "already installed" in again.stderr


def test_study_without_geometry_is_refused_by_a_millimetre_model(tmp_path, shared_testdata):
    from viewer.dicom import load

    card = export(Threshold3D(), torch.zeros(1, 1, 8, 8, 8), tmp_path / "mm-model",
                  {"task": "segmentation", "modality": [],
                   "preprocessing": WINDOW + [{"name": "resample", "spacing_mm": [1.0, 1.0, 1.0]}],
                   "inference": {"patch_size": [8, 8, 8]}, "output": {"name": "scores", **SEG_LABELS}})
    dx = load(shared_testdata / "seg_sr" / "highdicom" / "dx_image.dcm")
    with pytest.raises(InferenceError, match="mm-model 0.1 works in millimetres, but this series has no patient geometry"):
        segment(dx, card, provider="cpu")
