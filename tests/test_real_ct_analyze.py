"""`radsight analyze` on a real chest CT with a mass (Lung-PET-CT-Dx A0002, sharp B70f kernel,
8 mm slices, from ../shared/testdata/real_ct): the mass is reported as a mass (kind "mass",
Lung-RADS 4B from size, pending reader review) and the SR drafted from the analysis codes it as
SCT 4147007 "Mass", valid for dciodvfy. And how multifocal opacities set the study category."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest

from tests.cli_run import analyze_json
from tests.conftest import need_tool
from viewer.analysis.detection import Detection
from viewer.analysis.nodules import NoduleMeasurement
from viewer.analysis.patterns import split_pattern
from viewer.core.volume import Volume
from viewer.report.prefill import prefill
from viewer.report.sr import write_sr
from viewer.report.templates import find_template

SERIES = ("real_ct/lung_pet_ct_dx_A0002/Lung_Dx-A0002/04-25-2007-NA-ThoraxAThoraxRoutine Adult-34834/"
          "2.000000-ThoraxRoutine  8.0.0  B70f-62919")
BOX_CENTRE_XY = (-55.0, -100.0)  # the centre of the annotated boxes (ANNOTATIONS_derived_bbox_mm.csv), +-12 mm
BOX_Z = (176.0, 248.0)


@pytest.fixture(scope="module")
def series(shared_testdata) -> Path:
    return shared_testdata / SERIES


@pytest.fixture(scope="module")
def analysed(series, tmp_path_factory):
    return analyze_json(series, tmp_path_factory.mktemp("analyze-mass"))


@pytest.mark.slow
def test_the_mass_is_reported_as_a_mass(analysed):
    masses = [n for n in analysed["nodules"] if n.get("kind") == "mass"]
    assert len(masses) == 1, analysed["nodules"]
    mass = masses[0]
    x, y, z = mass["centre_lps_mm"]
    assert np.hypot(x - BOX_CENTRE_XY[0], y - BOX_CENTRE_XY[1]) <= 12.0 and BOX_Z[0] <= z <= BOX_Z[1]
    assert mass["long_axis_mm"] > 30.0 and mass["lung_rads"]["category"] == "4B"
    assert mass["provenance"]["method"] == "lung-region mass finder"
    assessment = analysed["assessment"]
    assert assessment["category"] == "4B" and assessment["status"] == "pending reader review"
    assert analysed["pattern"] is None


@pytest.mark.slow
def test_sr_codes_the_mass_as_a_mass(analysed, series, tmp_path):
    report = prefill(find_template("lung-screening-ldct-lungrads-2022"), analysed,
                     study={"source_paths": [str(series)], "series_uid": analysed["series_uid"]})
    path = write_sr(report, tmp_path / "sr.dcm", source_dir=series)
    sr = hd.sr.srread(path)
    groups = sr.content.get_planar_roi_measurement_groups() + sr.content.get_volumetric_roi_measurement_groups()
    types = [g.finding_type.value for g in groups if g.finding_type is not None]
    assert "4147007" in types, types
    proc = subprocess.run([need_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)


def _detection(x: float, diameter: float, kind: str = "ground-glass", what: str = "nodule") -> Detection:
    mask = Volume(np.ones((2, 2, 2), np.uint8), np.eye(4))
    m = NoduleMeasurement((x, 0.0, 0.0), diameter ** 3 * 0.5, diameter, diameter, diameter, -500.0, -300.0, kind,
                          None if kind != "part-solid" else diameter / 3, False, mask, what)
    return Detection(m, 0.5, "test", (), side="right" if x < 0 else "left")


def test_multifocal_subsolid_opacities_are_one_pattern():
    many = [_detection(x, 9.0) for x in (-90, -80, -70, 70, 80, 90)]
    solid_small = _detection(60, 6.0, "solid")
    solid_large = _detection(-60, 12.0, "solid")
    pattern, kept = split_pattern(many + [solid_small, solid_large])
    assert pattern is not None and (pattern.right, pattern.left) == (3, 4)
    assert kept == [solid_large]  # only what stays actionable inside the pattern
    assert pattern.to_json()["lung_rads"]["category"] == "0"
    # One-sided, or too few: not a pattern; everything stays a nodule.
    assert split_pattern([_detection(x, 9.0) for x in (-95, -90, -80, -70, -60, 70)])[0] is None
    assert split_pattern(many[:5])[0] is None


def test_pattern_sets_category_0_unless_a_4b_leads():
    from radsight_lung_nodules.analysis import _with_pattern

    pattern, _ = split_pattern([_detection(x, 9.0) for x in (-90, -80, -70, 70, 80, 90)])
    pending = {"guideline": "Lung-RADS v2022", "category": "4A", "management": "3-month LDCT", "rule": "r",
               "nodule": "N1", "status": "pending reader review", "source": "ai"}
    zero = _with_pattern(pending, pattern, "lung-rads")
    assert zero["category"] == "0" and "inflammatory or infectious" in zero["rule"]
    assert zero["status"] == "pending reader review"
    lead = _with_pattern({**pending, "category": "4B"}, pattern, "lung-rads")
    assert lead["category"] == "4B" and pattern.description in lead["rule"]
    assert _with_pattern(pending, None, "lung-rads") is pending
