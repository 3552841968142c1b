"""The model input check (viewer/inference/domain.py) and the cards' training_data / validated_on:
a real chest CT (the shared LIDC-IDRI slab) is outside the synthetic-only bundled models'
validated domain, with the reasons and their numbers; a study of the demo generator the models
were trained on is inside; a changed image (noise) or header (kernel) is caught by number."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from viewer.core.volume import SourceIdentity, Volume
from viewer.demo import generate_demo
from viewer.dicom import load
from viewer.dicom.study_facts import AcquisitionFacts, read_acquisition_facts
from viewer.inference.card import ModelCard, ModelCardError
from viewer.inference.domain import OUTSIDE, check_domain, check_study, measure_image, outside_summary
from viewer.inference.registry import discover

SEG_ID = "radsight-demo-lung-nodule-seg"
CLS_ID = "radsight-demo-nodule-classifier"
SLAB = "real_ct/lidc_idri_0003_slab"


@pytest.fixture(scope="module")
def cards():
    registry = discover()
    return [registry.get(SEG_ID), registry.get(CLS_ID)]


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    demo = generate_demo(tmp_path_factory.mktemp("domain"), preset="small", n_visits=1, seed=404)
    return demo.visits[0].study_dir


def test_bundled_cards_say_synthetic_training_data_and_where_they_were_validated(cards):
    for card in cards:
        td = card.training_data
        assert td is not None and td.kind == "synthetic" and "demo generator" in td.source
        assert ("RadSight", "RadSight synthetic phantom") in td.scanners
        assert td.pixel_spacing_mm == (0.9, 2.6) and td.slice_thickness_mm == (1.25, 2.5)
        assert set(td.hu) == {"air", "lung", "soft_tissue"}
        assert any(v.kind == "synthetic" for v in card.validated_on)
        # real CT: only the segmentation's lung label, against the CT-derived lung region
        assert all(v.kind == "synthetic" or all("lung_dice" in f for f in v.figures) for v in card.validated_on)
    sensitivity, validation = cards[0].figure("detector_sensitivity_ge_4mm")
    assert 0 < sensitivity <= 1 and "held out" in validation.data
    assert cards[0].to_json()["training_data"]["kind"] == "synthetic"


@pytest.mark.parametrize("change, field", [
    (lambda td: td.update(kind="phantom"), "training_data.kind"),
    (lambda td: td["hu"].pop("lung"), "training_data.hu"),
    (lambda td: td.update(pixel_spacing_mm=[2.6, 0.9]), "training_data.pixel_spacing_mm"),
    (lambda td: td.update(scanners=[]), "training_data.scanners"),
    (lambda td: td.update(colour="red"), "unknown field(s) colour"),
])
def test_a_wrong_training_data_field_is_refused_naming_file_and_field(tmp_path, change, field):
    data = json.loads(Path(discover().get(SEG_ID).card_path).read_text())
    change(data["training_data"])
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelCardError) as err:
        ModelCard.from_file(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_a_validation_without_a_date_is_refused(tmp_path):
    data = json.loads(Path(discover().get(SEG_ID).card_path).read_text())
    data["validated_on"][0]["date"] = "last week"
    path = tmp_path / "card.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelCardError, match=r"validated_on\[0\]: date 'last week'"):
        ModelCard.from_file(path)


def test_the_real_lidc_slab_is_outside_with_the_reasons_and_numbers(cards, shared_testdata):
    volume = load(shared_testdata / SLAB)
    facts = read_acquisition_facts(volume.source.path, volume.source.series_uid)
    assert facts.manufacturer == "GE MEDICAL SYSTEMS" and facts.kernel == "STANDARD" and facts.slice_thickness_mm == 2.5
    checks = check_study(cards, volume)
    for card in cards:
        check = checks[card.id]
        assert not check.within and check.label == OUTSIDE
        assert any("synthetic data only" in r and "GE MEDICAL SYSTEMS" in r for r in check.reasons), check.reasons
        # The slab's 0.82 mm pixels lie below the 0.9 mm of the finest training preset.
        assert any("Pixel spacing 0.82 mm" in r and "0.9-2.6 mm" in r for r in check.reasons), check.reasons
        assert check.measured["pixel_spacing_mm"] == [0.82, 0.82]
        assert -1030 < check.measured["air_hu"] < -970 and -900 < check.measured["lung_hu"] < -800
    summary = outside_summary(checks.values())
    assert summary.startswith(f"AI results {OUTSIDE}") and SEG_ID in summary and CLS_ID in summary


def test_a_demo_generator_study_is_within(cards, demo_study):
    checks = check_study(cards, load(demo_study))
    for card in cards:
        assert checks[card.id].within, checks[card.id].reasons
        assert checks[card.id].reasons == ()
    assert outside_summary(checks.values()) is None
    measured = checks[SEG_ID].measured
    assert measured["manufacturer"] == "RadSight" and measured["kernel"] == "STANDARD"
    assert abs(measured["lung_hu"] + 855) < 10 and abs(measured["noise_hu"] - 12.5) < 1.5


def test_noise_kernel_and_a_missing_header_are_caught_with_their_numbers(cards, demo_study):
    volume = load(demo_study)
    facts = read_acquisition_facts(demo_study)
    rng = np.random.default_rng(0)
    noisy = volume.with_voxels((volume.voxels + rng.normal(0, 30, volume.shape)).astype(np.int16))
    stats = measure_image(noisy)
    assert stats.noise_hu > 25
    check = check_domain(cards[0], noisy, facts, stats)
    assert not check.within
    assert check.reasons == (f"Image noise {stats.noise_hu:g} HU (standard deviation in soft tissue) is outside "
                             "the training range 10.5-14.3 HU.",)
    sharp = AcquisitionFacts(facts.manufacturer, facts.model_name, "BONE", facts.slice_thickness_mm)
    assert check_domain(cards[0], volume, sharp).reasons == (
        "Convolution kernel BONE is not one the model was trained on (STANDARD).",)
    bare = Volume(volume.voxels, volume.affine, source=SourceIdentity(modality="CT"))
    check = check_domain(cards[0], bare, None)
    assert not check.within and "names no scanner" in check.reasons[0]
    assert any("Slice Thickness (0018,0050) not stated" in n for n in check.notes)
