"""`radsight analyze --prior` end to end on three synthetic visits written as DICOM, run as a user
runs it (visit by visit, each one's nodules stored and reused as the next one's prior), checked
against the generator's ground truth on a seed never used while developing.

Tolerances: every present nodule >= 4 mm found within 3 mm of its true centre (a juxtavascular
nodule fused with a vessel nearly as thick as itself may be missed: detection cuts vessels with the
strict opening only, see viewer.analysis.detection; a click still measures it); at most 2 AI
findings per scan that are no nodule; persisting / new exactly as the truth says; tracking UIDs
equal across the visits' runs; VDT baseline-to-latest within 15% of the true doubling time for
growing nodules >= 5 mm that touch neither pleura nor vessel (the README says why those two are
measured less exactly); Lung-RADS exactly the table's category for the measured numbers, and the
ground truth's category wherever the truth is more than 1 mm from a size threshold.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from viewer.analysis.guidelines import is_growing, lung_rads_v2022
from viewer.demo import generate_demo

SEED = 91


def radsight(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "viewer.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("longitudinal"), preset="demo", n_visits=3, seed=SEED)


@pytest.fixture(scope="module")
def runs(visits, tmp_path_factory):
    """analyze on visit 1, then 2 with prior 1, then 3 with priors 1 and 2 (the demo's order)."""
    out = tmp_path_factory.mktemp("results")
    dirs = [v.study_dir for v in visits.visits]
    results = []
    for n, study in enumerate(dirs):
        priors = [a for d in dirs[:n] for a in ("--prior", d)]
        run = radsight("analyze", study, *priors, "--out", out / f"v{n}", "--json", "--quiet")
        assert run.returncode == 0, run.stderr
        results.append(json.loads(run.stdout))
    return results


def _match(records, nodule, tolerance_mm=3.0):
    present = [r for r in records if r.get("present", True)]
    if not present:
        return None
    best = min(present, key=lambda r: np.linalg.norm(np.subtract(r["centre_lps_mm"], nodule["centre_lps_mm"])))
    return best if np.linalg.norm(np.subtract(best["centre_lps_mm"], nodule["centre_lps_mm"])) <= tolerance_mm else None


@pytest.mark.slow
def test_every_nodule_found_few_false_positives(visits, runs):
    truth = visits.ground_truth()["visits"]
    for v, result in enumerate(runs):
        present = [n for n in truth[v]["nodules"] if n["present"] and n["equivalent_diameter_mm"] >= 4.0]
        found = {n["id"]: _match(result["nodules"], n) for n in present}
        missed = [n for n in present if found[n["id"]] is None]
        assert all(n["juxtavascular"] for n in missed), f"visit {v}: missed {[n['id'] for n in missed]}"
        matched = {r["id"] for r in found.values() if r is not None}
        others = [r for r in result["nodules"] if r.get("present", True) and r["id"] not in matched
                  and not any(_match([r], n, 4.0) for n in truth[v]["nodules"] if n["present"])]
        assert len(others) <= 2, f"visit {v}: {len(others)} findings on no nodule: {[r['centre_lps_mm'] for r in others]}"
        for r in result["nodules"]:
            if r.get("present", True):
                assert r["source"] == "ai" and r["provenance"]["models"], r
                assert 0.0 <= r["scores"]["detection"] <= 1.0


@pytest.mark.slow
def test_persisting_and_new_as_the_truth_says_with_stable_tracking_uids(visits, runs):
    truth = visits.ground_truth()["visits"]
    uids = {}
    for v, result in enumerate(runs):
        for nodule in (n for n in truth[v]["nodules"] if n["present"] and n["equivalent_diameter_mm"] >= 4.0):
            record = _match(result["nodules"], nodule)
            if record is None and nodule["juxtavascular"]:
                continue  # the one kind detection may miss (first test)
            # Matching is judged on what was detected: seen before = present and found at an earlier visit.
            seen_before = any(next(p for p in truth[u]["nodules"] if p["id"] == nodule["id"])["present"]
                              and _match(runs[u]["nodules"], next(p for p in truth[u]["nodules"]
                                                                  if p["id"] == nodule["id"])) is not None
                              for u in range(v))
            if v == 0:
                assert record["prior"] is None and record.get("status") in (None, "baseline")
            else:
                assert record["status"] == ("persisting" if seen_before else "new"), (v, nodule["id"], record["status"])
                assert (record["prior"] is None) == (not seen_before)
            if record["tracking_uid"] is not None:
                assert uids.setdefault(nodule["id"], record["tracking_uid"]) == record["tracking_uid"], nodule["id"]
            assert len(record["history"]) == 1 + sum(
                next(p for p in truth[u]["nodules"] if p["id"] == nodule["id"])["present"]
                and _match(runs[u]["nodules"], next(p for p in truth[u]["nodules"] if p["id"] == nodule["id"])) is not None
                for u in range(v))
    assert len(uids) >= 5 and len(set(uids.values())) == len(uids)


@pytest.mark.slow
def test_volume_doubling_time_within_15_percent(visits, runs):
    truth = visits.ground_truth()
    last = runs[-1]
    days = truth["visits"][-1]["day"] - truth["visits"][0]["day"]
    tracks = {t["tracking_uid"]: t for t in last["longitudinal"]["tracks"]}
    checked = 0
    for nodule in truth["visits"][-1]["nodules"]:
        first = next(n for n in truth["visits"][0]["nodules"] if n["id"] == nodule["id"])
        if not (first["present"] and nodule["present"]) or nodule["juxtapleural"] or nodule["juxtavascular"]:
            continue
        if nodule["vdt_days"] is None or nodule["vdt_days"] <= 0 or first["equivalent_diameter_mm"] < 5:
            continue
        record = _match(last["nodules"], nodule)
        overall = tracks[record["tracking_uid"]]["overall"]
        assert overall["days"] == days
        assert overall["vdt_days"] == pytest.approx(nodule["vdt_days"], rel=0.15), (nodule["id"], overall)
        low, high = overall["vdt_interval_days"]
        assert low < overall["vdt_days"] < (high if high is not None else math.inf)
        assert record["prior"]["vdt_days"] == pytest.approx(nodule["vdt_days"], rel=0.30)  # 9 months, more noise
        checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_lung_rads_follows_the_table(visits, runs):
    truth = visits.ground_truth()["visits"]
    compared = 0
    for v, result in enumerate(runs):
        for nodule in (n for n in truth[v]["nodules"] if n["present"] and n["equivalent_diameter_mm"] >= 4.0):
            record = _match(result["nodules"], nodule)
            if record is None and nodule["juxtavascular"]:
                continue
            prior = record["prior"]
            growing = bool(prior and prior["growing"])
            flags = dict(baseline=v == 0, new=v > 0 and prior is None, growing=growing)
            own = lung_rads_v2022(record["type"], record["mean_diameter_mm"], record["solid_mean_diameter_mm"], **flags)
            assert record["lung_rads"]["category"] == own.category, (v, nodule["id"])
            earlier = [(truth[u]["day"], next(p for p in truth[u]["nodules"] if p["id"] == nodule["id"]))
                       for u in range(v)]
            earlier = [(day, p) for day, p in earlier if p["present"]]
            if record["type"] != nodule["kind"]:
                continue
            true_growing = bool(earlier) and is_growing(earlier[-1][1]["mean_diameter_mm"], nodule["mean_diameter_mm"],
                                                        truth[v]["day"] - earlier[-1][0])
            # Robust cases only: the category is the same 1 mm either side of the true size, and, where
            # the true diameter change is within 1 mm of Lung-RADS' 1.5 mm growth step, either way.
            delta = nodule["mean_diameter_mm"] - earlier[-1][1]["mean_diameter_mm"] if earlier else 0.0
            growth_cases = {true_growing} if not earlier or abs(delta - 1.5) > 1.0 else {True, False}
            categories = {lung_rads_v2022(nodule["kind"], nodule["mean_diameter_mm"] + d,
                                          None if nodule["solid_mean_diameter_mm"] is None
                                          else nodule["solid_mean_diameter_mm"] + d,
                                          baseline=v == 0, new=v > 0 and not earlier, growing=g).category
                          for d in (-1.0, 0.0, 1.0) for g in growth_cases}
            if len(categories) == 1:
                assert record["lung_rads"]["category"] == categories.pop(), (v, nodule["id"], record["lung_rads"])
                compared += 1
    assert compared >= 5
    assert runs[-1]["assessment"]["guideline"] == "Lung-RADS v2022"


def test_wrong_priors_are_refused_before_any_model_runs(tmp_path):
    demo = generate_demo(tmp_path / "demo", preset="small", n_visits=2, seed=3)
    early, late = (v.study_dir for v in demo.visits)
    swapped = radsight("analyze", early, "--prior", late, "--out", tmp_path / "r", "--json", timeout=120)
    assert swapped.returncode != 0 and "after the current" in swapped.stderr and swapped.stdout == ""
    other = tmp_path / "other"
    shutil.copytree(early, other)
    for path in other.iterdir():
        ds = pydicom.dcmread(path)
        ds.PatientID = "RS-OTHER-PATIENT"
        ds.save_as(path)
    stranger = radsight("analyze", late, "--prior", other, "--out", tmp_path / "r", "--json", timeout=120)
    assert stranger.returncode != 0 and "different patients" in stranger.stderr
    assert "RS-OTHER-PATIENT" not in stranger.stderr  # the values are never shown
    assert len(stranger.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


@pytest.mark.slow
def test_each_stored_nodule_keeps_its_own_mask_and_confidence(runs):
    """What the viewer reopens is what analyze reported: each stored AI nodule's mask holds its
    own record's centre, and its confidence is its record's detection score."""
    from viewer.store import Store

    with Store() as store:
        for result in runs:
            rows = store.nodules(result["series_key"])
            assert len(rows) == sum(1 for r in result["nodules"] if r.get("present", True))
            for row in rows:
                mask = store.nodule_mask(row["id"])
                i, j, k = np.rint(mask.lps_to_index(row["record"]["centre_lps_mm"])).astype(int)
                assert mask.voxels[k, j, i], (row["record"]["id"], row["record"]["centre_lps_mm"])
                assert row["confidence"] == pytest.approx(row["record"]["scores"]["detection"], abs=1e-4)
