"""Volume doubling time against closed-form cases and the demo generator's known growth law,
with nodule volumes measured by RadSight on two visits of a thin-slice study."""

from __future__ import annotations

import math

import pytest

from viewer.analysis.growth import growth, vdt


def test_closed_form_cases():
    assert vdt(100, 100.0, 200.0) == pytest.approx(100.0)
    assert vdt(365, 100.0, 50.0) == pytest.approx(-365.0)
    assert vdt(90, 100.0, 100.0) is None
    g = growth(100, 100.0, 200.0, 5.8, 7.4)
    assert g.volume_change_pct == pytest.approx(100.0) and g.vdt_days == pytest.approx(100.0)
    low, high = g.vdt_interval_days
    assert low == pytest.approx(100 * math.log(2) / math.log(210 / 95)) and high == pytest.approx(100 * math.log(2) / math.log(190 / 105))
    assert "suspicious" in g.assessment and g.growing
    assert not growth(100, 100.0, 200.0, 5.8, 7.3).growing  # +1.5 mm is not yet growth (> 1.5 mm)


def test_interval_spanning_both_ranges_is_said():
    g = growth(365, 100.0, 160.0, 5.8, 6.6, relative_error=0.1)
    assert g.vdt_interval_days[0] < 400 < 600 < g.vdt_interval_days[1]
    assert "spans both" in g.assessment
    stable = growth(365, 100.0, 103.0, 5.8, 5.9)
    low, high = stable.vdt_interval_days
    assert high == math.inf and "no growth beyond the measurement error" in stable.assessment
    assert low == pytest.approx(365 * math.log(2) / math.log(103 * 1.05 / 95))
    assert stable.to_json()["vdt_interval_days"] == [round(low, 1), None]
    shrinking = growth(365, 100.0, 80.0, 5.8, 5.4)
    assert shrinking.vdt_interval_days == (math.inf, math.inf) and shrinking.vdt_days < 0
    assert shrinking.assessment == "no growth beyond the measurement error"


def test_bad_intervals_are_refused():
    with pytest.raises(ValueError, match="older than the current"):
        growth(-30, 100.0, 120.0, 5.0, 5.2)
    with pytest.raises(ValueError, match="positive"):
        vdt(30, 0.0, 10.0)


@pytest.mark.slow
def test_vdt_of_measured_demo_nodules_within_15_percent(tmp_path):
    from viewer.analysis.nodules import measure_at
    from viewer.demo import generate_demo
    from viewer.dicom import load

    demo = generate_demo(tmp_path, preset="demo", n_visits=3, seed=31)
    truth = demo.ground_truth()
    visits = [load(v.study_dir) for v in demo.visits]
    checked = 0
    for nodule_id in {n["id"] for n in truth["visits"][0]["nodules"]}:
        states = [next(n for n in visit["nodules"] if n["id"] == nodule_id) for visit in truth["visits"]]
        first, last = states[0], states[-1]
        if not (first["present"] and last["present"]) or first["juxtapleural"] or first["juxtavascular"]:
            continue
        if first["vdt_days"] is None or first["vdt_days"] <= 0 or first["equivalent_diameter_mm"] < 5:
            continue
        days = truth["visits"][-1]["day"] - truth["visits"][0]["day"]
        m0 = measure_at(visits[0], first["centre_lps_mm"])
        m2 = measure_at(visits[-1], last["centre_lps_mm"])
        g = growth(float(days), m0.volume_mm3, m2.volume_mm3, m0.mean_diameter_mm, m2.mean_diameter_mm)
        assert g.vdt_days == pytest.approx(first["vdt_days"], rel=0.15), (nodule_id, g.vdt_days, first["vdt_days"])
        checked += 1
    assert checked >= 1
