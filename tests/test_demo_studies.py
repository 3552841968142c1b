"""The demo studies through RadSight's own reader: geometry agrees with SimpleITK within 1e-3 mm,
voxels are identical, ground-truth nodule centres fall in their labels, and `radsight demo`
analyses every visit and prints its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pydicom
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


@pytest.mark.slow
def test_demo_command_analyses_every_visit_and_lists_outputs(tmp_path):
    """`radsight demo` runs `radsight analyze` on each visit with the earlier ones as priors: every
    visit's nodules are stored, a tracked nodule keeps its UID, the largest nodule seen at several
    visits is charted, and the classifier is explained at the detected nodules. Tolerances: the
    charted nodule lies within 6 mm of a true nodule and each visit's volume within 15% of the
    true one (the measurement's 10% on the coarse 2.6 mm "small" preset, plus detection's own
    centring)."""
    env = dict(os.environ, RADSIGHT_DATA_DIR=str(tmp_path / "data"))
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "demo", "--preset", "small", "--out", str(tmp_path / "d"),
                           "--no-gui", "--teaching", "--json", "--quiet"], capture_output=True, text=True, timeout=900,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    assert len(data["studies"]) == 3
    for png in data["outputs"]["snapshots"]:
        assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert all(s["modality"] == "CT" for s in data["series"])
    truth = json.loads(open(data["ground_truth"]).read())

    # One analysis per visit, in date order, each with all earlier visits as priors.
    assert [a["study"] for a in data["analyses"]] == data["studies"]
    assert [a["priors"] for a in data["analyses"]] == [data["studies"][:n] for n in range(3)]
    present = [n for n in data["nodules"] if n.get("present", True)]
    assert present and data["analyses"][-1]["nodules"] == len(present)
    assert data["assessment"]["guideline"] == "Lung-RADS v2022"
    worst = next(n for n in present if n["id"] == data["assessment"]["nodule"])
    assert worst["lung_rads"]["category"] == data["assessment"]["category"]
    # The demo generator's studies are what the bundled models were trained on: inside their domain;
    # the study category is still the AI's proposal until the demo's reader confirms it.
    assert data["models"] and all(m["domain"]["within"] for m in data["models"]), data["models"]
    assert data["assessment"]["status"] == "pending reader review" and data["assessment"]["outside_domain"] is None
    dates = [v["study_date"] for v in truth["visits"]]
    for n in present:
        assert n["tracking_uid"] and n["status"] in ("new", "persisting")
        history = n["history"]
        assert [h["date"] for h in history] == [d for d in dates if d in {h["date"] for h in history}]  # in date order
        assert history[-1]["volume_mm3"] == n["volume_mm3"]

    # Each visit's nodules are in the store; a nodule tracked into the latest visit has the same
    # tracking UID in the store's rows of the visit before.
    from viewer.dicom import open_path
    from viewer.store import Store

    os.environ["RADSIGHT_DATA_DIR"], before = env["RADSIGHT_DATA_DIR"], os.environ["RADSIGHT_DATA_DIR"]
    try:
        with Store() as store:
            rows = []
            for study in data["studies"]:
                series, _ = open_path(study)
                rows.append(store.nodules(max(series, key=lambda s: len(s.records)).key))
    finally:
        os.environ["RADSIGHT_DATA_DIR"] = before
    assert [len(r) for r in rows] == [a["nodules"] for a in data["analyses"]]
    assert sorted(r["tracking_uid"] for r in rows[-1]) == sorted(n["tracking_uid"] for n in present)
    assert all(r["source"] == "ai" and r["decision"] is None and r["model_id"] for r in rows[-1])
    persisting = [n for n in present if len(n["history"]) > 1]
    assert persisting, "no nodule of the latest visit was tracked from an earlier one"
    uids_before = {r["tracking_uid"] for r in rows[1]}
    for n in persisting:
        if n["history"][-2]["date"] == dates[1]:
            assert n["tracking_uid"] in uids_before

    # The growth chart is of the largest persisting nodule, which is a real one, over all its visits.
    charted = max(persisting, key=lambda n: n["volume_mm3"])
    (chart,) = data["outputs"]["charts"]
    assert chart.endswith(f"growth-{charted['id']}.png")
    from matplotlib.image import imread

    pixels = imread(chart)
    assert pixels[..., :3].std() > 0.05 and (pixels[..., :3] < 0.5).mean() > 0.005, "blank chart"
    latest = truth["visits"][-1]["nodules"]
    distance, match = min((np.linalg.norm(np.subtract(t["centre_lps_mm"], charted["centre_lps_mm"])), t["id"])
                          for t in latest if t["present"])
    assert distance <= 6.0, (distance, match)
    true_volumes = {v["study_date"]: next(t["volume_mm3"] for t in v["nodules"] if t["id"] == match)
                    for v in truth["visits"]}
    for h in charted["history"]:
        expected = true_volumes[h["date"]]
        assert h["volume_mm3"] == pytest.approx(expected, rel=0.15), (h, expected)

    # The bundled classifier explained at every detected nodule of the latest visit: stored
    # Parametric Maps whose relevance peaks within the crop (32 mm) around each nodule.
    assert len(data["outputs"]["heatmaps"]) == len(present) == len(data["explanations"])
    from viewer.dicom.pmap import read_parametric_map

    for nodule, explanation in zip(present, data["explanations"]):
        assert explanation["nodule"] == nodule["id"]
        values, description = read_parametric_map(explanation["path"])
        assert explanation["method"] == "LayerCAM" and description.startswith("LayerCAM")  # the card's map
        assert np.abs(np.subtract(explanation["peak_lps_mm"], nodule["centre_lps_mm"])).max() <= 16.0
        assert values.voxels.max() == 1.0
    assert any(p.endswith("explanation-axial.png") for p in data["outputs"]["snapshots"])

    # It ends with a signed report of the latest visit: SR and PDF that verify, with every
    # detected nodule as a finding, the demo identity as signer, and the patient summary.
    from viewer.report.pdf_signature import verify_pdf
    from viewer.report.sr import verify_sr

    report = data["report"]
    assert report["signer"] == "RadSight Demo Reader" and report["findings"] == len(present)
    assert data["outputs"]["sr"] == report["sr"] and data["outputs"]["pdf"] == report["pdf"]
    sr, pdf = verify_sr(report["sr"]), verify_pdf(report["pdf"])
    assert sr["valid"] and pdf["valid"], (sr, pdf)
    sr_ds = pydicom.dcmread(report["sr"])
    assert sr_ds.VerificationFlag == "VERIFIED" and sr_ds.StudyInstanceUID == data["series"][-1]["study_uid"]
    summary = open(report["summary"], encoding="utf-8").read()
    assert "not a diagnosis" in summary.lower()
    os.environ["RADSIGHT_DATA_DIR"] = env["RADSIGHT_DATA_DIR"]
    try:
        with Store() as store:  # released as the Report panel releases it: what consultation mode shows
            assert store.approved_summary(report["id"], report["version"]).text + "\n" == summary
    finally:
        os.environ["RADSIGHT_DATA_DIR"] = before

    # --teaching: the latest visit as a bio-model (one GLB, an STL per part; every detected nodule
    # its own watertight part holding its mask's volume) and a 24-frame turntable.
    import imageio.v3 as iio
    import trimesh

    bio = data["bio_model"]
    parts = {m["name"]: m for m in bio["labels"]}
    assert {f"nodule {n['id']}" for n in present} <= set(parts), sorted(parts)
    assert {"left lung", "right lung", "bone"} <= set(parts)
    for name, part in parts.items():
        assert part["watertight"], (name, part["problems"])
        assert abs(part["volume_difference_pct"]) < 5.0, (name, part)
    glb = next(f for f in data["outputs"]["meshes"] if f.endswith(".glb"))
    scene = trimesh.load(glb)
    assert len(scene.geometry) == len(parts)
    stl = next(f for f in data["outputs"]["meshes"] if f.endswith(".stl") and "nodule" in f)
    assert trimesh.load(stl).is_watertight
    assert iio.improps(data["outputs"]["turntable"], index=None).shape[0] == bio["frames"] == 24
