"""Matching, FROC / CPM and the validation run.

The FROC case is small and its numbers are worked out by hand in the test's comments. The run is
checked with a stand-in method whose findings are placed at known points of a real DICOM series
with a LUNA16 table as reference, then end to end: `radsight validate --detector` on synthetic
demo studies with their nodule label maps (slow), with --update-card.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.dicom_factory import write_series
from viewer.core.errors import RadSightError
from viewer.validation.froc import froc
from viewer.validation.lesion import ReferenceLesion
from viewer.validation.matching import DUPLICATE, EXCLUDED, FALSE_POSITIVE, HIT, Finding, match
from viewer.validation.run import validate

ROOT = Path(__file__).resolve().parents[1]


def _lesion(name, centre, diameter, counts=True):
    return ReferenceLesion(id=name, source=f"{name}.csv", format="LUNA16 CSV", matched_by="test",
                           centre_lps_mm=tuple(centre), diameter_mm=diameter, counts=counts)


def test_froc_and_cpm_by_hand():
    # Two scans, three lesions. Scores, highest first: FP .95, hit .9, FP .8, hit .6, FP .3, hit .2.
    # Points (FP per scan, sensitivity): (0, 0) (.5, 0) (.5, 1/3) (1, 1/3) (1, 2/3) (1.5, 2/3) (1.5, 1).
    # At 1/8 and 1/4: between (0, 0) and (.5, 0): 0. At 1/2: the top of the rise: 1/3. At 1: 2/3.
    # At 2, 4, 8: past the last point: 1. CPM = (0 + 0 + 1/3 + 2/3 + 1 + 1 + 1) / 7 = 4/7.
    curve = froc([0.9, 0.6, 0.2], [0.95, 0.8, 0.3], lesions=3, scans=2)
    at = curve.to_json()["sensitivity_at"]
    assert [at[k] for k in ("0.125", "0.25", "0.5", "1", "2", "4", "8")] == pytest.approx(
        [0, 0, 1 / 3, 2 / 3, 1, 1, 1], abs=1e-4)
    assert curve.cpm == pytest.approx(4 / 7)
    # Linear between points: at 0.75 FP/scan, halfway from (.5, 1/3) to (1, 1/3): 1/3; one more FP
    # at .25 makes the last step a diagonal from (1.5, 2/3) to (2, 1), so 1.75 gives 5/6.
    assert curve.sensitivity_at(0.75) == pytest.approx(1 / 3)
    diagonal = froc([0.9, 0.6, 0.25], [0.95, 0.8, 0.3, 0.25], lesions=3, scans=2)
    assert diagonal.sensitivity_at(1.75) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="credited once"):
        froc([0.9, 0.8], [], lesions=1, scans=1)


def test_matching_credits_each_lesion_once_and_ignores_excluded_findings():
    a = _lesion("A", (0, 0, 0), 10.0)
    b = _lesion("B", (50, 0, 0), 6.0)
    small = _lesion("small", (0, 50, 0), 2.0, counts=False)
    findings = [Finding("f1", (1, 1, 0), 0.5), Finding("f2", (-2, 0, 0), 0.9),  # both in A: f2 credits it
                Finding("f3", (50, 3.1, 0), 0.8),                                 # 3.1 mm from B's centre: outside
                Finding("f4", (0, 50.5, 0), 0.7),                                 # inside the excluded finding
                Finding("f5", (100, 0, 0), 0.1)]
    result = match(findings, [a, b, small])
    outcome = {m.finding.id: m.outcome for m in result.matches}
    assert outcome == {"f2": HIT, "f1": DUPLICATE, "f3": FALSE_POSITIVE, "f4": EXCLUDED, "f5": FALSE_POSITIVE}
    assert result.hit_of(a).finding.id == "f2" and result.hit_of(b) is None


class StandIn:
    """A method whose findings sit at given points: tests the run without running a detector."""

    kind = "detector"
    models = ()

    def __init__(self, points_scores):
        self.points_scores = points_scores

    def findings(self, volume, progress=None, cancelled=None):
        return [Finding(f"D{n}", tuple(p), s, 4.0, 30.0) for n, (p, s) in enumerate(self.points_scores, 1)], {}


def test_run_with_a_stand_in_method(tmp_path):
    truth = write_series(tmp_path / "study" / "ct", shape_zyx=(12, 40, 40), spacing_xy=(1.0, 1.0), step=2.0,
                         origin=(-20.0, -20.0, 0.0))
    uid = truth["series_uid"]
    (tmp_path / "study" / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n"
        f"{uid},0,0,10,8\n{uid},10,10,16,6\n{uid},-10,5,8,2\n"   # the last is under 3 mm: excluded
        f"{uid},0,0,500,8\n"                                       # outside the series: left out with a note
        "1.2.3.4,0,0,0,5\n")                                       # another series: a warning
    method = StandIn([((1, 1, 10), 0.9), ((10, 10, 30), 0.4), ((-10, 5, 8), 0.7)])
    report = validate(tmp_path, method, tmp_path / "out")
    f = report["figures"]
    assert (f["cases"], f["lesions"], f["excluded_findings"], f["hits"], f["false_positives"]) == (1, 2, 1, 1, 1)
    assert f["sensitivity"] == 0.5 and f["false_positives_per_scan"] == 1.0
    # Scores: hit .9, FP .4 (the one at .7 is inside the excluded finding): (0,0) (0,.5) (1,.5): CPM .5.
    assert f["cpm"] == pytest.approx(0.5)
    assert [r["outcome"] for r in report["ignored_detections"]] == [EXCLUDED]
    [case] = report["cases"]
    assert any("outside the series" in n for n in case["notes"])
    assert not any("annotations.csv" in w for w in report["warnings"])  # it matched a case
    rows = {r["id"]: r for r in report["lesions"]}
    assert [r["found"] for r in rows.values()] == [True, False, None]
    for row in report["lesions"] + report["false_positives"]:
        assert (tmp_path / "out" / row["thumbnail"]).stat().st_size > 1000


def test_no_cases_is_an_error(tmp_path):
    with pytest.raises(RadSightError, match="no CT series"):
        validate(tmp_path, StandIn([]))


def _run(args, env, timeout=900):
    return subprocess.run([sys.executable, "-m", "viewer.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_bad_input(tmp_path):
    env = dict(os.environ)
    proc = _run(["validate", str(tmp_path / "missing"), "--detector"], env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such folder" in proc.stderr
    proc = _run(["validate", str(tmp_path)], env)
    assert proc.returncode == 2 and "--detector" in proc.stderr


@pytest.mark.slow
def test_validate_detector_on_demo_studies(tmp_path):
    env = dict(os.environ, RADSIGHT_DATA_DIR=str(tmp_path / "data"))
    made = _run(["validate", "--make-demo-set", str(tmp_path / "set"), "--cases", "2", "--seed", "1000", "--json",
                 "--quiet"], env)
    assert made.returncode == 0, made.stderr
    assert len(json.loads(made.stdout)["studies"]) == 2
    bundled = ROOT / "models" / "radsight-demo-lung-nodule-seg" / "card.json"
    before = hashlib.sha256(bundled.read_bytes()).hexdigest()
    proc = _run(["validate", str(tmp_path / "set"), "--detector", "--out", str(tmp_path / "out"), "--update-card",
                 "--json"], env)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    f = report["figures"]
    # Ground truth: every present nodule of the two phantoms is a reference lesion (label map).
    truth = [n for case in ("case00", "case01")
             for n in json.loads((tmp_path / "set" / case / "ground_truth.json").read_text())["visits"][0]["nodules"]
             if n["present"]]
    assert f["lesions"] + f["excluded_findings"] == len(truth)
    assert f["cases"] == 2 and f["hits"] >= 1 and 0 < f["sensitivity"] <= 1 and f["cpm"] is not None
    assert f["dice"]["n"] == f["hits"] and f["volume_error_pct"]["n"] == f["hits"]
    assert f["seconds_per_study"]["n"] == 2
    html = (tmp_path / "out" / "validation.html").read_text()
    assert "data:image/png;base64," in html and html.count("<img") >= len(report["lesions"])
    assert json.loads((tmp_path / "out" / "validation.json").read_text())["figures"]["cpm"] == f["cpm"]
    # --update-card: the user's copy has the entry; the bundled card is unchanged.
    card = Path(report["outputs"]["card"])
    assert card.is_relative_to(tmp_path / "data")
    entry = json.loads(card.read_text())["local_validation"][-1]
    assert entry["scope"] == "detector" and entry["figures"]["cpm"] == f["cpm"]
    assert entry["data_set"]["cases"] == 2
    assert hashlib.sha256(bundled.read_bytes()).hexdigest() == before


@pytest.mark.slow
def test_pointing_game_of_the_bundled_classifier(tmp_path):
    from viewer.inference.registry import discover
    from viewer.validation.demo_set import make_demo_set
    from viewer.validation.methods import ClassifierMethod

    make_demo_set(tmp_path / "set", cases=1, seed=1200)
    card = discover().get("radsight-demo-nodule-classifier")
    report = validate(tmp_path / "set", ClassifierMethod(card, "cpu"))
    game = report["figures"]["pointing_game"]
    explained = [r["explanation"] for r in report["lesions"] if r["counts"]]
    assert game["lesions"] == len(explained) == report["figures"]["lesions"] > 0
    assert game["peak_inside"] == sum(x["peak_inside"] for x in explained)
    for x in explained:
        assert 0.0 <= x["mass_inside"] <= 1.0 and x["method"] in ("Grad-CAM", "LayerCAM", "HiResCAM", "Occlusion")
        if x["peak_inside"]:
            assert x["peak_distance_mm"] < 30.0  # demo nodules are at most ~25 mm across
