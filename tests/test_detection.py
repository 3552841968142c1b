"""Nodule detection against the synthetic generator's ground truth, on a thin-slice demo study
(384 x 384 x 200, 0.9 x 0.9 x 1.25 mm) written as DICOM and read back, with a seed never used
while developing.

Visit 0 runs the whole pipeline with the bundled models (lung mask and nodule channel from the
segmentation model, scores from the type classifier); visit 1 runs without models (threshold
lung mask) and with a stand-in nodule channel on one nodule, so both candidate sources are used.

Goals and tolerances: every present nodule of >= 4 mm equivalent diameter found (juxtapleural,
juxtavascular and ground-glass included), centre within max(2 mm, half the radius) of the truth;
at most 2 false positives per scan; volume median error <= 5% for nodules >= 5 mm and <= 15% for
4-5 mm, leaving out juxtapleural nodules, whose part inside the pleura measure_at does not count,
and juxtavascular ones, where it keeps a stub of the vessel (up to +40% here; the tests of
measure_at leave both out too).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from viewer.analysis.candidates import channel_candidates
from viewer.analysis.detection import (METHOD_BLOB, METHOD_CHANNEL, DetectionError, detect_in_study,
                                       detect_nodules)
from viewer.core.volume import SourceIdentity, Volume
from viewer.demo import generate_demo
from viewer.dicom import load

MAX_FALSE_POSITIVES = 2


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    demo = generate_demo(tmp_path_factory.mktemp("detection"), preset="demo", n_visits=2, seed=61)
    truth = demo.ground_truth()
    return [(load(visit.study_dir), load(visit.labels_path), [n for n in truth["visits"][v]["nodules"] if n["present"]])
            for v, visit in enumerate(demo.visits)]


@pytest.fixture(scope="module")
def detected(study):
    volume0, _, _ = study[0]
    with_models = detect_in_study(volume0, provider="cpu")
    volume1, labels1, nodules1 = study[1]
    channel_nodule = max(nodules1, key=lambda n: n["volume_mm3"])
    probability = volume1.with_voxels(np.where(labels1.voxels == channel_nodule["label"], 0.9, 0.0)
                                      .astype(np.float32), unit="1")
    steps = []
    without_models = detect_nodules(volume1, nodule_probability=probability,
                                    progress=lambda done, total, message: steps.append(message))
    return [with_models, without_models], channel_nodule, steps


def match(detections, nodules):
    """(truth nodule, detection) pairs by nearest centre within max(2 mm, half the radius), and the
    detections that match no nodule."""
    pairs, used = [], set()
    for nodule in nodules:
        tolerance = max(2.0, nodule["equivalent_diameter_mm"] / 4)
        distances = [np.linalg.norm(np.subtract(d.measurement.centre_lps_mm, nodule["centre_lps_mm"]))
                     for d in detections]
        if distances and min(distances) <= tolerance:
            best = int(np.argmin(distances))
            pairs.append((nodule, detections[best]))
            used.add(best)
    return pairs, [d for i, d in enumerate(detections) if i not in used]


@pytest.mark.slow
def test_every_nodule_of_4_mm_or_more_is_found_with_few_false_positives(study, detected):
    for (volume, _, nodules), detections in zip(study, detected[0]):
        wanted = [n for n in nodules if n["equivalent_diameter_mm"] >= 4.0]
        assert any(n["juxtapleural"] for n in wanted) and any(n["juxtavascular"] for n in wanted)
        assert any(n["kind"] == "ground-glass" for n in wanted)
        pairs, unmatched = match(detections, wanted)
        missed = [n["id"] for n in wanted if n["id"] not in {p[0]["id"] for p in pairs}]
        assert not missed, f"missed {missed}; found {[d.measurement.centre_lps_mm for d in detections]}"
        false_positives = [d for d in unmatched if not any(
            np.linalg.norm(np.subtract(d.measurement.centre_lps_mm, n["centre_lps_mm"])) < 5 for n in nodules)]
        assert len(false_positives) <= MAX_FALSE_POSITIVES, [d.to_json() for d in false_positives]


@pytest.mark.slow
def test_detected_volumes_within_the_issue_tolerance(study, detected):
    errors = []
    for (volume, _, nodules), detections in zip(study, detected[0]):
        pairs, _ = match(detections, [n for n in nodules if n["equivalent_diameter_mm"] >= 4.0])
        for nodule, detection in pairs:
            error = (detection.measurement.volume_mm3 - nodule["volume_mm3"]) / nodule["volume_mm3"]
            if nodule["juxtapleural"]:
                assert detection.measurement.juxtapleural and error > -0.7, nodule["id"]
                continue
            if nodule["juxtavascular"]:  # measure_at keeps a stub of the touching vessel
                assert -0.2 < error < 0.6, f"{nodule['id']}: {error:+.0%}"
                continue
            assert abs(error) <= 0.25, f"{nodule['id']}: {detection.measurement.volume_mm3:.0f} vs {nodule['volume_mm3']:.0f}"
            errors.append((nodule["equivalent_diameter_mm"], error))
    errors = np.array(errors)
    large, small = np.abs(errors[errors[:, 0] >= 5, 1]), np.abs(errors[errors[:, 0] < 5, 1])
    assert len(large) >= 6 and np.median(large) <= 0.05, large
    assert len(small) >= 1 and np.median(small) <= 0.15, small


@pytest.mark.slow
def test_provenance_scores_and_types(study, detected):
    (with_models, without_models), channel_nodule, steps = detected
    _, _, nodules0 = study[0]
    for d in with_models:
        assert {m.id for m in d.models} == {"radsight-demo-lung-nodule-seg", "radsight-demo-nodule-classifier"}
        assert 0.0 <= d.score <= 1.0 and "classifier" in d.score_basis
        assert sum(d.class_probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert d.method in (METHOD_CHANNEL, METHOD_BLOB)
        assert set(d.to_json()) >= {"centre_lps_mm", "volume_mm3", "score", "method", "models", "class_probabilities"}
    # The bundled model's nodule channel finds most nodules itself; the blob detector adds the rest.
    matched = match(with_models, nodules0)[0]
    assert sum(d.method == METHOD_CHANNEL for _, d in matched) >= len(matched) / 2, [d.method for _, d in matched]
    for nodule, d in matched:
        assert max(d.class_probabilities, key=d.class_probabilities.get) == nodule["kind"], nodule["id"]
        assert d.measurement.type == nodule["kind"], nodule["id"]
    for d in without_models:
        assert d.models == () and d.class_probabilities == {} and 0.0 <= d.score <= 1.0
    _, _, nodules1 = study[1]
    by_id = {n["id"]: d for n, d in match(without_models, nodules1)[0]}
    assert by_id[channel_nodule["id"]].method == METHOD_CHANNEL
    assert by_id[channel_nodule["id"]].score == pytest.approx(0.9)
    assert all(d.method == METHOD_BLOB for i, d in by_id.items() if i != channel_nodule["id"])
    assert any("blob filter" in s for s in steps) and any("measuring candidate" in s for s in steps)


@pytest.mark.slow
def test_a_scan_without_nodules_gives_few_detections(study):
    volume, labels, nodules = study[1]
    # Paint every nodule (and a 2 mm rim) over with lung at the phantom's noise level.
    nodule_voxels = ndimage.binary_dilation(labels.voxels >= 10, iterations=2)
    rng = np.random.default_rng(0)
    voxels = volume.voxels.copy()
    voxels[nodule_voxels] = (-855 + rng.normal(0, 14, int(nodule_voxels.sum()))).astype(voxels.dtype)
    detections = detect_nodules(volume.with_voxels(voxels))
    assert len(detections) <= MAX_FALSE_POSITIVES, [d.to_json() for d in detections]
    for d in detections:
        assert all(np.linalg.norm(np.subtract(d.measurement.centre_lps_mm, n["centre_lps_mm"])) > 5 for n in nodules)


def test_channel_candidates_are_component_centres():
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    probability = np.zeros((20, 30, 30), np.float32)
    probability[5:9, 10:14, 4:8] = 0.8
    probability[14:16, 20:22, 20:22] = 0.6
    candidates = channel_candidates(Volume(probability, affine))
    assert len(candidates) == 2
    first = min(candidates, key=lambda c: c.point_lps[0])
    assert first.point_lps == pytest.approx((2.75, 5.75, 6.5)) and first.response == pytest.approx(0.8)


def test_not_ct_is_refused_with_the_reason():
    mr = Volume(np.zeros((8, 16, 16), np.int16), np.eye(4), source=SourceIdentity(modality="MR", path="/data/t1"))
    with pytest.raises(DetectionError, match=r"needs a CT.*/data/t1.* is MR"):
        detect_nodules(mr)
    with pytest.raises(DetectionError, match="is MR"):
        detect_in_study(mr)


def test_wrong_lung_mask_and_empty_lung_are_refused():
    ct = Volume(np.full((8, 16, 16), 40, np.int16), np.eye(4), source=SourceIdentity(modality="CT"))
    with pytest.raises(DetectionError, match=r"shape \(4, 16, 16\).*another series"):
        detect_nodules(ct, lung_mask=Volume(np.ones((4, 16, 16), np.uint8), np.eye(4)))
    with pytest.raises(DetectionError, match="no lung found"):
        detect_nodules(ct)


@pytest.mark.slow
def test_cancel_stops_early(study):
    volume, _, _ = study[0]
    assert detect_nodules(volume, cancelled=lambda: True) == []
