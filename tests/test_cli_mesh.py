"""`radsight export-mesh` end to end on the small demo: JSON contract, files that trimesh reads
back watertight with the mask volume (within 5 %), stored nodules as named parts, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from viewer.cli import main
from viewer.render.meshes import NODULE_COLOR


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from viewer.demo import generate_demo

    return generate_demo(tmp_path_factory.mktemp("demo"), preset="small", n_visits=1, seed=11)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["export-mesh", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_export_mesh_json_on_the_demo(demo, tmp_path, capsys):
    visit = demo.visits[0]
    code, out, err = run(capsys, visit.study_dir, "--format", "stl", "--format", "glb", "--format", "obj",
                         "--out", tmp_path / "meshes", "--quality", "draft", "--json")
    assert code == 0, err
    assert "meshing" in err  # progress on stderr, JSON alone on stdout
    data = json.loads(out)
    assert data["study_uid"] == visit.study_uid
    truth = [n for n in demo.ground_truth()["visits"][0]["nodules"] if n["present"]]
    by_name = {item["name"]: item for item in data["labels"]}
    assert {"left lung", "right lung", "pulmonary vessels", "heart and aorta", "bone"} <= set(by_name)
    for nodule in truth:
        item = by_name[f"nodule {nodule['id']}"]
        assert item["color"] == list(NODULE_COLOR) and item["finding"]
    for item in data["labels"]:
        assert set(item) >= {"value", "name", "color", "files", "triangles", "volume_mm3", "mask_volume_mm3",
                             "volume_difference_pct", "watertight", "problems"}
        assert set(item["files"]) == {"stl", "glb", "obj"}
        assert item["watertight"], (item["name"], item["problems"])
        solid = trimesh.load(item["files"]["stl"], force="mesh")
        assert solid.is_watertight and len(solid.faces) == item["triangles"]
        assert solid.volume == pytest.approx(item["mask_volume_mm3"], rel=0.05), item["name"]
        assert abs(item["volume_difference_pct"]) < 5.0
    assert all(p for p in data["files"]) and len(data["files"]) == len(data["labels"]) + 3  # + obj, mtl, glb
    scene = trimesh.load(by_name["bone"]["files"]["glb"])
    assert {f"nodule {n['id']}" for n in truth} <= set(scene.geometry)


@pytest.mark.slow
def test_stored_nodules_become_named_parts(demo, tmp_path, capsys):
    """A nodule the store keeps for the series (as the nodule plugin saves it: a cropped mask with
    its own affine) replaces the phantom's nodules and is named after its record."""
    from viewer.core.volume import Volume
    from viewer.dicom import load, open_path
    from viewer.store import Store

    visit = demo.visits[0]
    series, result = open_path(visit.study_dir)
    study = load(visit.study_dir)
    nodule = next(n for n in demo.ground_truth()["visits"][0]["nodules"] if n["present"] and n["label"] == 12)
    labels = load(visit.labels_path)
    k, j, i = np.nonzero(labels.voxels == 12)
    lo = np.array([k.min(), j.min(), i.min()]) - 2
    crop = (labels.voxels[lo[0]:k.max() + 3, lo[1]:j.max() + 3, lo[2]:i.max() + 3] == 12).astype(np.uint8)
    affine = study.affine.copy()
    affine[:3, 3] = study.index_to_lps(lo[::-1])
    with Store() as store:
        store.import_scan(series, result)
        key = max(series, key=lambda s: len(s.records)).key
        store.save_nodule(key, {"id": "X7", "centre_lps_mm": nodule["centre_lps_mm"]}, "measured",
                          mask=Volume(crop, affine, study.frame_of_reference_uid))
        try:
            code, out, err = run(capsys, visit.study_dir, "--format", "stl", "--out", tmp_path, "--quality", "draft",
                                 "--json", "--quiet")
        finally:
            for row in store.nodules(key):
                store.delete_nodule(row["id"])
    assert code == 0, err
    data = json.loads(out)
    nodules = [item for item in data["labels"] if item["finding"]]
    assert [item["name"] for item in nodules] == ["nodule X7"]
    assert nodules[0]["mask_volume_mm3"] == pytest.approx(crop.sum() * abs(np.linalg.det(study.affine[:3, :3])))
    assert "stored nodules" in data["labels_source"]


def test_bad_labels_file_is_one_line_naming_it(demo, tmp_path, capsys):
    bad = tmp_path / "labels.nii.gz"
    bad.write_bytes(b"not a NIfTI file at all")
    code, out, err = run(capsys, demo.visits[0].study_dir, "--labels", bad, "--out", tmp_path / "o", "--json")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and lines[0].startswith("radsight export-mesh: error:")


def test_image_passed_as_labels_is_refused(demo, tmp_path, capsys):
    code, _, err = run(capsys, demo.visits[0].study_dir, "--labels", demo.visits[0].study_dir / "IM00001.dcm",
                       "--out", tmp_path, "--quiet")
    assert code == 2 and "IM00001.dcm" in err.strip().splitlines()[-1]


def test_missing_study_is_an_error(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "nowhere", "--out", tmp_path, "--quiet")
    assert code == 2 and "no such file or folder" in err
