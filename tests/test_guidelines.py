"""Lung-RADS v2022 and Fleischner 2017, row by row of the published tables, at and around every
size threshold (Lung-RADS: mean diameter to 0.1 mm; Fleischner: to the nearest millimetre)."""

from __future__ import annotations

import pytest

from viewer.analysis.guidelines import fleischner_2017, is_growing, lung_rads_v2022, worst

LR = lung_rads_v2022


@pytest.mark.parametrize("d, category", [(3.0, "2"), (5.9, "2"), (5.94, "2"), (5.96, "3"), (6.0, "3"), (7.9, "3"),
                                         (8.0, "4A"), (14.9, "4A"), (15.0, "4B"), (30.0, "4B")])
def test_solid_baseline(d, category):
    assert LR("solid", d).category == category


@pytest.mark.parametrize("d, category", [(3.9, "2"), (4.0, "3"), (5.9, "3"), (6.0, "4A"), (7.9, "4A"), (8.0, "4B")])
def test_solid_new(d, category):
    assert LR("solid", d, baseline=False, new=True).category == category


@pytest.mark.parametrize("d, category", [(5.0, "4A"), (7.9, "4A"), (8.0, "4B"), (12.0, "4B")])
def test_solid_growing(d, category):
    assert LR("solid", d, baseline=False, growing=True).category == category


@pytest.mark.parametrize("d, solid, category", [(5.9, 3.0, "2"), (6.0, 5.9, "3"), (10.0, 5.9, "3"), (10.0, 6.0, "4A"),
                                                (10.0, 7.9, "4A"), (10.0, 8.0, "4B"), (20.0, 12.0, "4B")])
def test_part_solid_baseline(d, solid, category):
    assert LR("part-solid", d, solid).category == category


@pytest.mark.parametrize("d, solid, new, growing, category", [
    (5.9, 2.0, True, False, "3"),    # new < 6 mm total
    (8.0, 3.9, True, False, "4A"),   # new, solid component < 4 mm
    (8.0, 4.0, True, False, "4B"),   # new, solid component >= 4 mm
    (12.0, 3.0, False, True, "4A"),  # growing, solid component < 4 mm
    (12.0, 4.0, False, True, "4B"),  # growing, solid component >= 4 mm
])
def test_part_solid_new_or_growing(d, solid, new, growing, category):
    assert LR("part-solid", d, solid, baseline=False, new=new, growing=growing).category == category


@pytest.mark.parametrize("d, baseline, new, growing, category", [
    (29.9, True, False, False, "2"), (29.9, False, True, False, "2"), (29.9, False, False, True, "2"),
    (30.0, True, False, False, "3"), (30.0, False, True, False, "3"), (35.0, False, False, False, "2"),
])
def test_ground_glass(d, baseline, new, growing, category):
    assert LR("ground-glass", d, baseline=baseline, new=new, growing=growing).category == category


def test_flags_and_stepped_management():
    assert LR("solid", 12.0, benign_calcification_or_fat=True).category == "1"
    assert LR("solid", 9.9, perifissural=True).category == "2"
    assert LR("solid", 10.0, perifissural=True).category == "4A"
    assert LR("solid", 7.0, baseline=False, prior_category="3", stable_at_followup=True).category == "2"
    assert LR("solid", 9.0, baseline=False, prior_category="4A", stable_at_followup=True).category == "3"
    assert LR("solid", 9.0, suspicious_features=True).category == "4X"
    assert LR("solid", 5.0, suspicious_features=True).category == "2"  # 4X upgrades 3 and 4 only
    assessment = LR("solid", 9.2)
    assert assessment.management.startswith("3-month LDCT") and "8 to < 15 mm (9.2 mm)" in assessment.rule
    assert worst([LR("solid", 5.0), LR("solid", 16.0), LR("ground-glass", 12.0)]).category == "4B"
    with pytest.raises(ValueError, match="solid component"):
        LR("part-solid", 9.0)
    with pytest.raises(ValueError, match="not one of"):
        LR("calcified", 9.0)


def test_growth_definition():
    assert is_growing(6.0, 7.6, 365) and not is_growing(6.0, 7.5, 365) and not is_growing(6.0, 9.0, 400)


@pytest.mark.parametrize("kind, d, solid, multiple, high, text", [
    ("solid", 5.4, None, False, False, "No routine follow-up"),
    ("solid", 5.4, None, False, True, "Optional CT at 12 months"),
    ("solid", 5.5, None, False, False, "CT at 6-12 months, then consider CT at 18-24 months"),  # rounds to 6
    ("solid", 8.0, None, False, True, "CT at 6-12 months, then CT at 18-24 months"),
    ("solid", 8.6, None, False, False, "Consider CT at 3 months, PET/CT, or tissue sampling"),
    ("solid", 7.0, None, True, False, "CT at 3-6 months, then consider CT at 18-24 months"),
    ("solid", 7.0, None, True, True, "CT at 3-6 months, then CT at 18-24 months"),
    ("solid", 10.0, None, True, True, "CT at 3-6 months, then consider CT at 18-24 months"),
    ("ground-glass", 5.0, None, False, False, "No routine follow-up"),
    ("ground-glass", 6.0, None, False, False, "CT at 6-12 months to confirm persistence, then CT every 2 years until 5 years"),
    ("part-solid", 5.0, 2.0, False, False, "No routine follow-up"),
    ("part-solid", 7.0, 3.0, False, False, "CT at 3-6 months to confirm persistence; if unchanged and the solid component remains < 6 mm, annual CT for 5 years"),
    ("ground-glass", 4.0, None, True, False, "CT at 3-6 months; if stable, consider CT at 2 and 4 years"),
    ("part-solid", 9.0, 4.0, True, False, "CT at 3-6 months; subsequent management based on the most suspicious nodule(s)"),
])
def test_fleischner_2017(kind, d, solid, multiple, high, text):
    assert fleischner_2017(kind, d, solid, multiple=multiple, high_risk=high).management == text
