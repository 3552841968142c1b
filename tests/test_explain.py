"""Explanations (Grad-CAM via an onnx2torch twin, occlusion through ONNX Runtime) on DICOM
written here: the map's peak lies on the decisive feature, whose position is known and is not the
crop centre; the twin equals ONNX Runtime; maps of randomised models differ (Adebayo et al. 2018)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from tests.dicom_factory import write_blob_ct
from tests.onnx_factory import BlobNet, export
from viewer.dicom import load
from viewer.inference.explain import explain, gradcam
from viewer.inference.registry import discover
from viewer.inference.run import InferenceError, as_batch, classifier_input, classify, probabilities_of
from viewer.inference.session import get_session
from viewer.inference.torch_twin import check_twin, model_layout, run_twin, target_layer, torch_twin

torch.set_num_threads(1)

PRE = [{"name": "reorient", "to": "LPS"}, {"name": "resample", "spacing_mm": [1.0, 1.0, 1.0]},
       {"name": "window", "low": -1000, "high": 400}]
BLOB_CLASSES = {"labels": [{"value": 0, "name": "blob"}, {"value": 1, "name": "no blob"}]}
RADIUS = 4.0  # mm, the blob's radius in write_blob_ct


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    centre = np.array([12.0, -30.0, 55.0])
    folder = write_blob_ct(tmp_path_factory.mktemp("blob"), centre)
    return load(folder), centre


@pytest.fixture(scope="module")
def blob3d(tmp_path_factory):
    return export(BlobNet(3), torch.zeros(1, 1, 32, 32, 32), tmp_path_factory.mktemp("m") / "blob3d",
                  {"task": "classification", "crop_mm": [32, 32, 32], "preprocessing": PRE,
                   "input": {"name": "image", "axes": "NCDHW", "spatial_size": [32, 32, 32]},
                   "output": {"name": "scores", "kind": "logits", **BLOB_CLASSES},
                   "explain": {"target_layer": "/conv2/Conv"}}, dynamic=False)


def distance(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def test_gradcam_peak_lies_on_the_blob_not_on_the_crop_centre(blob, blob3d):
    volume, centre = blob
    point = centre + np.array([7.0, -5.0, 4.0])  # the crop centre is 9.5 mm from the blob
    heatmap = explain(volume, blob3d, point, provider="cpu")
    assert heatmap.method == "Grad-CAM" and heatmap.layer == "conv2/Conv"
    assert heatmap.target.name == "blob" and heatmap.probability > 0.9
    assert "matches ONNX Runtime" in heatmap.note
    assert distance(heatmap.peak_lps, centre) <= RADIUS  # on the sphere
    assert distance(heatmap.peak_lps, point) > RADIUS
    # The map is on the model's 1 mm crop grid; its affine places the crop around the point.
    assert heatmap.values.shape == (32, 32, 32) and np.allclose(heatmap.values.spacing, 1.0)
    assert distance(heatmap.values.index_to_lps([16, 16, 16]), point) < 1.0
    assert heatmap.values.voxels.max() == pytest.approx(1.0) and heatmap.values.voxels.min() >= 0
    assert heatmap.probability == pytest.approx(classify(volume, blob3d, point, provider="cpu").probabilities[0], abs=1e-6)


def test_occlusion_peak_lies_on_the_blob(blob, blob3d):
    volume, centre = blob
    point = centre + np.array([-6.0, 6.0, 0.0])
    heatmap = explain(volume, blob3d, point, method="occlusion", provider="cpu")
    assert heatmap.method == "Occlusion" and heatmap.layer == ""
    # Occlusion patches are 8 mm wide and move by 4 mm: the peak is within a patch of the blob.
    assert distance(heatmap.peak_lps, centre) <= RADIUS + 4.0


def test_2d_classifier_explained_on_the_slice_through_the_point(tmp_path, blob):
    volume, centre = blob
    card = export(BlobNet(2), torch.zeros(1, 1, 40, 40), tmp_path / "blob2d",
                  {"task": "classification", "crop_mm": [40, 40], "preprocessing": PRE,
                   "input": {"name": "image", "axes": "NCHW", "spatial_size": [40, 40]},
                   "output": {"name": "scores", "kind": "logits", **BLOB_CLASSES}}, dynamic=False)
    point = centre + np.array([8.0, 6.0, 0.5])
    heatmap = explain(volume, card, point, provider="cpu")
    assert heatmap.method == "Grad-CAM" and heatmap.layer == "conv2/Conv"  # the last convolution, found itself
    assert heatmap.values.shape == (1, 40, 40)
    peak = np.array(heatmap.peak_lps)
    assert distance(peak[:2], centre[:2]) <= RADIUS and abs(peak[2] - point[2]) <= 0.5


def test_unconvertible_model_falls_back_to_occlusion_and_says_why(tmp_path, blob):
    volume, centre = blob
    card = export(BlobNet(3), torch.zeros(1, 1, 32, 32, 32), tmp_path / "opset18",  # ReduceMean-18: no converter
                  {"task": "classification", "crop_mm": [32, 32, 32], "preprocessing": PRE,
                   "input": {"name": "image", "spatial_size": [32, 32, 32]},
                   "output": {"name": "scores", **BLOB_CLASSES}}, dynamic=False, opset=18)
    heatmap = explain(volume, card, centre + np.array([0.0, 7.0, 0.0]), provider="cpu")
    assert heatmap.method == "Occlusion"
    assert "onnx2torch cannot convert" in heatmap.note and "ReduceMean" in heatmap.note
    assert distance(heatmap.peak_lps, centre) <= RADIUS + 4.0
    with pytest.raises(InferenceError, match="Grad-CAM is not possible: model opset18"):
        explain(volume, card, centre, method="gradcam", provider="cpu")


def test_explaining_a_segmentation_model_or_a_missing_class_is_refused(blob, blob3d):
    volume, centre = blob
    seg = discover().get("radsight-demo-lung-nodule-seg")
    with pytest.raises(InferenceError, match="explanations are for classifiers"):
        explain(volume, seg, centre)
    with pytest.raises(InferenceError, match="no class 5"):
        explain(volume, blob3d, centre, target=5, provider="cpu")
    with pytest.raises(InferenceError, match="give the point"):
        explain(volume, blob3d, None, provider="cpu")


@pytest.fixture(scope="module")
def nodule_case(tmp_path_factory):
    from viewer.demo import generate_demo

    demo = generate_demo(tmp_path_factory.mktemp("demo"), preset="small", n_visits=1, seed=404)
    nodules = [n for n in demo.ground_truth()["visits"][0]["nodules"] if n["present"]]
    return load(demo.visits[0].study_dir), nodules


@pytest.mark.slow
def test_bundled_classifier_twin_equals_onnx_runtime(nodule_case):
    volume, nodules = nodule_case
    card = discover().get("radsight-demo-nodule-classifier")
    session, twin = get_session(card, "cpu"), torch_twin(card)
    for nodule in nodules:
        batch = as_batch(classifier_input(volume, card, nodule["centre_lps_mm"]), card)
        onnx_logits = session.predict(batch)[0]
        assert np.max(np.abs(run_twin(twin, batch, card)[0] - onnx_logits)) < 1e-4  # logits, not only probabilities
        assert check_twin(twin, batch, card, onnx_logits, probabilities_of) < 1e-5


def test_third_party_model_twin_equals_onnx_runtime(tmp_path, shared_testdata):
    """onnx2torch on a graph nobody here wrote (niivue brainchop, BSD-2): same output as ONNX
    Runtime. Its declared 256^3 input would need ~24 GB in torch eager; the graph is only Conv and
    Relu, so the copy here declares dynamic spatial axes and both run a 40^3 input."""
    import json

    import onnx

    from viewer.inference.card import ModelCard, sha256_of

    model = onnx.load(str(shared_testdata / "onnx" / "niivue_brainchop_gm_wm.onnx"))
    for value in (*model.graph.input, *model.graph.output):
        for axis in value.type.tensor_type.shape.dim[2:]:
            axis.dim_param = "s"
    folder = tmp_path / "niivue"
    folder.mkdir()
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "card.json").write_text(json.dumps({
        "id": "niivue", "version": "1", "task": "segmentation", "sha256": sha256_of(folder / "model.onnx"),
        "intended_use": "test", "input": {}, "output": {"labels": [{"value": 1, "name": "gm"}]}}))
    card = ModelCard.from_file(folder / "card.json")
    batch = np.random.default_rng(0).random((1, 1, 40, 40, 40)).astype(np.float32)
    expected = get_session(card, "cpu").predict(batch)
    assert np.max(np.abs(run_twin(torch_twin(card), batch, card) - expected)) < 1e-4 * max(1.0, np.abs(expected).max())


@pytest.mark.slow
def test_randomised_weights_change_the_map(nodule_case):
    """Model-randomisation sanity check: a map that survives randomising the weights shows the
    input, not the model. Pearson correlation of trained vs randomised maps stays low."""
    volume, nodules = nodule_case
    card = discover().get("radsight-demo-nodule-classifier")
    twin = torch_twin(card)
    layer_name, _ = target_layer(twin, card)
    correlations = []
    for seed, nodule in enumerate(nodules[:4]):
        batch = as_batch(classifier_input(volume, card, nodule["centre_lps_mm"]), card)
        target = int(np.argmax(run_twin(twin, batch, card)[0]))
        inputs = model_layout(batch, card)
        trained = gradcam(twin, dict(twin.named_modules())[layer_name], inputs, target, batch.shape[2:])
        randomised = copy.deepcopy(twin)
        torch.manual_seed(seed)
        for module in randomised.modules():
            if isinstance(module, (torch.nn.Conv3d, torch.nn.Linear)):
                module.reset_parameters()
        random_map = gradcam(randomised, dict(randomised.named_modules())[layer_name], inputs, target, batch.shape[2:])
        if random_map.std() == 0:
            correlations.append(0.0)  # a randomised model with no positive evidence: nothing survives
            continue
        correlations.append(float(np.corrcoef(trained.ravel(), random_map.ravel())[0, 1]))
    assert np.mean(np.abs(correlations)) < 0.5, correlations


def test_card_explain_section_is_checked(tmp_path, blob3d):
    import json

    from viewer.inference.card import ModelCard, ModelCardError

    raw = json.loads(blob3d.card_path.read_text())
    for change, message in (({"explain": {"method": "lime"}}, "explain.method 'lime'"),
                            ({"explain": {"target_layer": 3}}, "explain.target_layer must be"),
                            ({"crop_mm": [32, 32]}, "crop_mm \\[32, 32\\] must list 3")):
        (tmp_path / "card.json").write_text(json.dumps({**raw, **change}))
        with pytest.raises(ModelCardError, match=message):
            ModelCard.from_file(tmp_path / "card.json")
    card = dataclasses.replace(blob3d, explain={"target_layer": "/nowhere/Conv"})
    from viewer.inference.torch_twin import TwinError
    with pytest.raises(TwinError, match="'/nowhere/Conv' is not a layer"):
        target_layer(torch_twin(card), card)


class SkipBlobNet(BlobNet):
    """BlobNet whose output also reads the input after the Grad-CAM layer (a skip connection), so
    its graph does not split at the layer and the whole twin must run."""

    def forward(self, x):
        return super().forward(x) + 0.01 * x.mean(dim=(2, 3, 4))


def test_onnx_activation_gradcam_equals_whole_twin_gradcam(blob, blob3d, tmp_path):
    """The fast path (activation from ONNX Runtime, backward through the head only) gives the
    same map as captum on the whole converted model; a graph with a skip connection past the
    layer takes the whole-twin path and still finds the blob."""
    from viewer.inference.explain import gradcam_on_onnx_activation

    volume, centre = blob
    point = centre + np.array([5.0, 5.0, -3.0])
    bundled = discover().get("radsight-demo-nodule-classifier")
    for card in (blob3d, bundled):
        twin = torch_twin(card)
        layer, module = target_layer(twin, card)
        batch = as_batch(classifier_input(volume, card, point), card)
        for target in range(len(card.labels)):
            whole = gradcam(twin, module, model_layout(batch, card), target, batch.shape[2:])
            fast, diff = gradcam_on_onnx_activation(card, twin, layer, batch, target, get_session(card, "cpu"))
            assert diff < 1e-5 and np.allclose(fast, whole, atol=1e-4 * max(whole.max(), 1e-6)), (card.id, target)
    skip = export(SkipBlobNet(3), torch.zeros(1, 1, 32, 32, 32), tmp_path / "skip",
                  {"task": "classification", "crop_mm": [32, 32, 32], "preprocessing": PRE,
                   "input": {"name": "image", "spatial_size": [32, 32, 32]},
                   "output": {"name": "scores", **BLOB_CLASSES}}, dynamic=False)
    twin = torch_twin(skip)
    layer, _ = target_layer(twin, skip)
    batch = as_batch(classifier_input(volume, skip, point), skip)
    assert gradcam_on_onnx_activation(skip, twin, layer, batch, 0, get_session(skip, "cpu")) is None
    heatmap = explain(volume, skip, point, provider="cpu")
    assert heatmap.method == "Grad-CAM" and heatmap.note.startswith("torch twin")
    assert distance(heatmap.peak_lps, centre) <= RADIUS


@pytest.mark.slow
def test_explain_benchmark_reports_ratios_measured_in_the_same_run():
    import json
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "viewer.cli", "bench", "explain", "--repeat", "3", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    assert report["crop"] == [32, 32, 32] and report["forward_onnxruntime_s"] > 0
    assert report["gradcam_vs_forward"] == pytest.approx(report["gradcam_s"] / report["forward_onnxruntime_s"])
    assert report["occlusion_s"] > report["gradcam_s"]  # hundreds of forward passes against one
    assert "goal < 3x" in report["text"]


def test_explain_json_says_how_much_of_the_map_lies_inside_the_measured_nodule(tmp_path, blob):
    """`radsight explain --at` measures the nodule at the point and reports the share of the map's
    mass inside its mask; a point with no nodule gives no such figure."""
    import json
    import subprocess
    import sys

    from tests.dicom_factory import write_blob_ct

    centre = np.array([12.0, -30.0, 55.0])
    (tmp_path / "ct").mkdir()
    folder = write_blob_ct(tmp_path / "ct", centre)
    run = subprocess.run([sys.executable, "-m", "viewer.cli", "explain", str(folder), "--model",
                          "radsight-demo-nodule-classifier", "--at", ",".join(map(str, centre)),
                          "--out", str(tmp_path / "map.dcm"), "--json"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads(run.stdout)
    assert 0.0 <= data["mass_inside_finding"] <= 1.0
    assert "of the map" in data["note"] and "finding" in data["note"]
    volume, _ = blob
    from viewer.inference.explain_study import measured_finding

    assert measured_finding(volume, centre + np.array([0.0, 14.0, 0.0])) is None  # lung only: nothing measured


def test_the_cards_cam_is_the_default_map_and_a_requested_method_wins(blob, blob3d):
    """explain.method names the family (gradcam = class activation maps), explain.cam the variant:
    without a method from the caller the card's variant is drawn; a method asked for is kept."""
    volume, centre = blob
    card = dataclasses.replace(blob3d, explain={**blob3d.explain, "method": "gradcam", "cam": "layercam"})
    assert explain(volume, card, centre, provider="cpu").method == "LayerCAM"
    assert explain(volume, card, centre, method="gradcam", provider="cpu").method == "Grad-CAM"
    assert explain(volume, card, centre, method="hirescam", provider="cpu").method == "HiResCAM"


def test_fine_layer_map_is_the_product_of_both_layers_maps_on_either_path(blob, blob3d):
    """explain.fine_layer: the map is the target layer's times the finer layer's (each scaled to
    its maximum); the fast path (activation of the finer layer from ONNX Runtime) equals the
    whole twin's, and the peak stays on the blob, away from the crop centre."""
    from viewer.inference.explain import fine_layer, gradcam_on_onnx_activation
    from viewer.inference.torch_twin import layer_grid

    volume, centre = blob
    point = centre + np.array([5.0, 5.0, -3.0])
    card = dataclasses.replace(blob3d, explain={**blob3d.explain, "fine_layer": "/relu1/Relu"})
    twin = torch_twin(card)
    layer, module = target_layer(twin, card)
    fine = fine_layer(twin, card)
    assert fine[0] == "relu1/Relu"
    batch = as_batch(classifier_input(volume, card, point), card)
    inputs, shape = model_layout(batch, card), batch.shape[2:]
    grid, fine_grid = layer_grid(twin, layer, 3), fine[2]
    coarse = gradcam(twin, module, inputs, 0, shape, "layercam", grid)
    finer = gradcam(twin, fine[1], inputs, 0, shape, "layercam", fine_grid)
    whole = gradcam(twin, module, inputs, 0, shape, "layercam", grid, fine=fine[1:])
    assert np.allclose(whole, coarse / coarse.max() * finer / finer.max(), atol=1e-6)
    fast, diff = gradcam_on_onnx_activation(card, twin, layer, batch, 0, get_session(card, "cpu"), "layercam",
                                            grid, fine)
    assert diff < 1e-5 and np.allclose(fast, whole, atol=1e-4 * whole.max())
    heatmap = explain(volume, card, point, method="layercam", provider="cpu")
    assert heatmap.layer == "conv2/Conv x relu1/Relu" and "explain.fine_layer" in heatmap.note
    assert distance(heatmap.peak_lps, centre) <= RADIUS < distance(point, centre)
    with pytest.raises(InferenceError, match="fine_layer"):
        explain(volume, dataclasses.replace(card, explain={**card.explain, "fine_layer": 3}), point, provider="cpu")
