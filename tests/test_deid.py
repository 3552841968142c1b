"""De-identified export (issue 8): PS3.15 Basic Profile with modified dates, on the synthetic demo,
hand-made datasets full of identifying values, and real files from shared/testdata (dcmqi SEG/SR
and images, BSD-3; highdicom, MIT; cornerstone transfer syntaxes, MIT)."""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from tests.conftest import need_tool
from viewer.core.errors import RadSightError
from viewer.dicom.deid import deidentify_paths
from viewer.dicom.deid_key import DeidKey
from viewer.dicom.deid_profile import basic_profile_action

KEY_A = DeidKey(b"project-a-" + b"0123456789abcdef" * 2)
KEY_B = DeidKey(b"project-b-" + b"fedcba9876543210" * 2)


def _rich(path: Path, patient: dict, study: int, study_date: str, study_time: str, ref_uid: str | None = None) -> Path:
    """A small CT slice with many Basic Profile attributes set, inside sequences and private blocks too."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "MERCY_PACS_01"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    base = f"1.2.826.0.1.3680043.9.7777.{patient['n']}.{study}"
    ds.SOPInstanceUID = f"{base}.3.1"
    ds.StudyInstanceUID = f"{base}.1"
    ds.SeriesInstanceUID = f"{base}.2"
    ds.FrameOfReferenceUID = f"{base}.4"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.Manufacturer = "ACME Imaging"
    ds.PatientName = patient["name"]
    ds.PatientID = patient["id"]
    ds.IssuerOfPatientID = "ST-MERCY-HOSPITAL"
    ds.PatientBirthDate = patient["birth"]
    ds.PatientBirthTime = "071544"
    ds.PatientSex = "F"
    ds.PatientAge = "066Y"
    ds.PatientWeight = 71.5
    ds.PatientAddress = "12 Elm Street, Springfield"
    ds.PatientTelephoneNumbers = "555-0142-99"
    ds.OtherPatientIDs = f"OLD-{patient['id']}"
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = f"ALT-{patient['id']}"
    ds.OtherPatientIDsSequence[0].IssuerOfPatientID = "COUNTY-REGISTRY"
    ds.PatientComments = f"Daughter {patient['relative']} to be called"
    ds.Occupation = "Master plumber"
    ds.EthnicGroup = "Martian"
    ds.InstitutionName = "St Mercy Hospital Springfield"
    ds.InstitutionAddress = "1 Hospital Road, Springfield"
    ds.InstitutionalDepartmentName = "Thoracic Radiology West"
    ds.ReferringPhysicianName = "House^Gregory"
    ds.PerformingPhysicianName = "Cuddy^Lisa"
    ds.NameOfPhysiciansReadingStudy = "Wilson^James"
    ds.OperatorsName = "Chase^Robert"
    ds.AccessionNumber = f"ACC{patient['n']}{study}99887"
    ds.StudyID = f"STUDY-47{patient['n']}{study}"
    ds.StationName = "CT-ROOM-SEVEN"
    ds.DeviceSerialNumber = "SN-CT-0099812"
    ds.StudyDescription = f"CT chest {patient['name']} follow-up"
    ds.SeriesDescription = "lung kernel for Dr House"
    ds.ProtocolName = "Mercy special protocol 7"
    ds.ImageComments = "patient moved, call 555-0142-99"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study_time
    ds.AcquisitionDateTime = study_date + study_time
    ds.InstanceCreationDate, ds.InstanceCreationTime = study_date, study_time
    request = Dataset()
    request.RequestedProcedureID = f"RP-{patient['n']}{study}3456"
    request.ScheduledProcedureStepID = f"SPS-{patient['n']}{study}8765"
    request.ScheduledProcedureStepStartDate = study_date
    ds.RequestAttributesSequence = Sequence([request])
    if ref_uid:  # a date inside a sequence that stays (X/Z/U*: its UIDs are remapped)
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = ref_uid
        ref.ContentDate = study_date
        ds.ReferencedImageSequence = Sequence([ref])
    block = ds.private_block(0x0009, "MERCY HOSPITAL INFO", create=True)
    block.add_new(0x01, "LO", f"{patient['name']} VIP ward")
    block.add_new(0x02, "DA", patient["birth"])
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelSpacing, ds.SliceThickness, ds.KVP = [0.7, 0.7], 1.25, 120
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, study], [1, 0, 0, 0, 1, 0]
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = (np.arange(64, dtype=np.uint16) * (study + 7)).tobytes()
    ds.BurnedInAnnotation = "NO"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


JANE = {"n": 1, "name": "Doe^Jane^Quincy", "id": "MRN-00424242", "birth": "19580402", "relative": "Maryanne"}
RICH = {"n": 2, "name": "Roe^Richard", "id": "MRN-00535353", "birth": "19490917", "relative": "Bartholomew"}


def _secondary_capture(path: Path, burned_in: str | None) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (f"1.2.826.0.1.3680043.9.7777.9.{i}" for i in (1, 2, 3))
    ds.Modality, ds.ConversionType = "OT", "WSD"
    ds.PatientName, ds.PatientID = "Screen^Shot", "MRN-SC-0001"
    ds.StudyDate = "20230101"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(range(16))
    if burned_in:
        ds.BurnedInAnnotation = burned_in
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_testdata) -> dict:
    root = tmp_path_factory.mktemp("deid-in")
    hand = root / "hand"
    # Jane: two studies 400 days apart, the first late in the evening (a shift in hours would
    # move it across midnight); Richard: one study. The second Jane file references the first.
    first = _rich(hand / "jane1" / "a.dcm", JANE, 1, "20230301", "235930")
    ref = pydicom.dcmread(first).SOPInstanceUID
    _rich(hand / "jane2" / "b.dcm", JANE, 2, "20240404", "081500", ref_uid=ref)
    _rich(hand / "richard" / "c.dcm", RICH, 1, "20220717", "120000")
    _secondary_capture(hand / "sc" / "burned.dcm", "YES")
    _secondary_capture(hand / "sc2" / "unstated.dcm", None)
    corrupt = hand / "broken" / "corrupt.dcm"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f" + b"garbage" * 5)
    truncated = hand / "broken" / "truncated.dcm"  # a real file cut inside its pixel data
    truncated.write_bytes(first.read_bytes()[:-40])
    dcmqi = shared_testdata / "seg_sr" / "dcmqi" / "23x38x3"
    return {"hand": hand, "corrupt": corrupt, "truncated": truncated, "images": dcmqi / "image", "seg": dcmqi / "seg" / "label.seg",
            "sr": shared_testdata / "seg_sr" / "dcmqi" / "sr-example",
            "highdicom": shared_testdata / "seg_sr" / "highdicom",
            "syntaxes": shared_testdata / "transfer_syntaxes"}


@pytest.fixture(scope="module")
def run_a(inputs, tmp_path_factory):
    paths = [inputs[k] for k in ("hand", "images", "seg", "sr", "highdicom", "syntaxes")]
    return deidentify_paths(paths, tmp_path_factory.mktemp("deid-a") / "out", KEY_A)


def _walk(ds: Dataset):
    for elem in ds:
        yield ds, elem
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _walk(item)


def _strings(value) -> list[str]:
    if isinstance(value, (bytes, bytearray)):
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [s for v in value for s in _strings(v)]
    return [str(value)] if value is not None and str(value) != "" else []


def _identifying_values(ds: Dataset) -> set[str]:
    """Every value of a Basic Profile attribute (and of private ones) present in the input, at any
    depth, less those the profile lets stay: times (kept with whole-day shifts), class and
    well-known UIDs, values too short to be telling, and values that a kept attribute also holds."""
    values, kept = set(), set()

    def collect(item: Dataset, private: bool):
        for elem in item:
            listed = basic_profile_action(elem.tag) is not None or private or elem.tag.is_private
            in_sr_text = elem.keyword == "TextValue"  # the content tree's free text gets tokens
            if elem.VR == "SQ":
                for sub in elem.value:
                    collect(sub, private or elem.tag.is_private)
                continue
            numeric = elem.VR in ("SL", "SS", "UL", "US", "FL", "FD", "SV", "UV", "IS", "DS")
            private_number = (private or elem.tag.is_private) and numeric  # no text to leak
            target = values if (listed or in_sr_text) and elem.VR != "TM" and not private_number else kept
            for s in _strings(elem.value):
                target.add(s)
                if elem.VR == "PN":
                    target.update(part for part in s.split("^") if part)

    collect(ds, False)
    values = {v.strip() for v in values if len(v.strip()) >= 4 and not v.startswith("1.2.840.10008.")}
    return {v for v in values if not any(v in k for k in kept)}


def test_no_identifying_value_survives(run_a):
    """Attribute by attribute: no value of a Basic Profile attribute of any input file is in any
    output dataset (at any depth) nor anywhere in the output files' bytes."""
    assert len(run_a.copies) > 20
    for source, target in run_a.copies:
        original = pydicom.dcmread(source)
        secret = _identifying_values(original)
        assert secret, source
        out = pydicom.dcmread(target)
        seen = {s for _, elem in _walk(out) for s in _strings(elem.value)}
        seen |= {s for elem in out.file_meta for s in _strings(elem.value)}
        leaked = {v for v in secret if any(v in s for s in seen)}
        assert not leaked, f"{source} -> {target}: {sorted(leaked)}"
        raw = target.read_bytes()
        in_bytes = {v for v in secret if len(v) >= 6 and v.encode("latin-1", "ignore") in raw}
        assert not in_bytes, f"{target} bytes hold {sorted(in_bytes)}"
        assert not any(elem.tag.is_private for _, elem in _walk(out))
        assert out.PatientIdentityRemoved in ("YES", "NO")
        assert out.LongitudinalTemporalInformationModified == "MODIFIED"
        assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100", "113107"]
        assert "SourceApplicationEntityTitle" not in out.file_meta
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        assert out.SOPInstanceUID.startswith("2.25.")
    # hand-made values that must be gone, named so a regression says which
    hand = {t: pydicom.dcmread(t) for s, t in run_a.copies if "hand" in s.parts and "sc" not in s.parts[-2]}
    for out in hand.values():
        for keyword in ("PatientAddress", "OtherPatientIDsSequence", "PatientComments", "IssuerOfPatientID",
                        "PerformingPhysicianName", "StudyDescription", "ImageComments", "PatientBirthTime",
                        "PatientAge", "Occupation", "RequestAttributesSequence"):
            assert keyword not in out, keyword
        assert out.PatientBirthDate == "" and out.AccessionNumber == "" and out.ReferringPhysicianName == ""
        assert out.DeviceSerialNumber == "ANONYMIZED"  # D: Type 1 in Enhanced General Equipment


def test_clinical_data_and_pixels_unchanged(run_a):
    """Pixel data byte for byte (compressed syntaxes not re-encoded), geometry, spacing, KVP kept."""
    for source, target in run_a.copies:
        a, b = pydicom.dcmread(source), pydicom.dcmread(target)
        if "PixelData" in a:  # an odd-length value gains DICOM's pad byte on write, nothing else
            assert b.PixelData[:len(a.PixelData)] == a.PixelData, source
            assert len(b.PixelData) - len(a.PixelData) in (0, 1), source
        assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID
        for keyword in ("SOPClassUID", "Modality", "Rows", "Columns", "PixelSpacing", "ImagePositionPatient",
                        "ImageOrientationPatient", "SliceThickness", "KVP", "RescaleSlope", "RescaleIntercept"):
            assert b.get(keyword) == a.get(keyword), (source, keyword)
    lossless = [t for s, t in run_a.copies if s.name.endswith("JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm")]
    plain = [t for s, t in run_a.copies if s.name == "CTImage.dcm"]
    assert np.array_equal(pydicom.dcmread(lossless[0]).pixel_array, pydicom.dcmread(plain[0]).pixel_array)


def _by_source(run, name: str) -> Dataset:
    return pydicom.dcmread(next(t for s, t in run.copies if s.name == name))


def _day(da: str) -> date:
    return date(int(da[:4]), int(da[4:6]), int(da[6:8]))


def test_dates_shift_by_whole_days_per_patient(run_a, inputs):
    """Every date of a patient moves by one whole-day offset: intervals survive exactly in days,
    times stay, and the birth date goes."""
    shifts = {}
    for name in ("a.dcm", "b.dcm", "c.dcm"):
        source = next(inputs["hand"].rglob(name))
        a, b = pydicom.dcmread(source), _by_source(run_a, name)
        shift = {(_day(b[k].value) - _day(a[k].value)).days for k in
                 ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate")}
        shift.add((_day(b.AcquisitionDateTime[:8]) - _day(a.AcquisitionDateTime[:8])).days)
        assert len(shift) == 1, shift
        assert b.StudyTime == a.StudyTime and b.AcquisitionDateTime[8:] == a.AcquisitionDateTime[8:]
        shifts[name] = shift.pop()
        assert shifts[name] <= -3650  # at least ten years back
    assert shifts["a.dcm"] == shifts["b.dcm"] != shifts["c.dcm"]
    jane = [s for s in run_a.studies if s.patient_id == _by_source(run_a, "a.dcm").PatientID]
    assert [s.days_from_first_study for s in jane] == [0, (date(2024, 4, 4) - date(2023, 3, 1)).days]
    nested = _by_source(run_a, "b.dcm").ReferencedImageSequence[0]
    assert (_day(nested.ContentDate) - date(2024, 4, 4)).days == shifts["b.dcm"]
    printed = json.dumps(run_a.to_json())
    assert "shift" not in printed and str(-shifts["a.dcm"]) not in printed  # the secret stays out


def test_pseudonyms_consistent_and_keyed(run_a, inputs, tmp_path):
    a1, a2, c = (_by_source(run_a, n) for n in ("a.dcm", "b.dcm", "c.dcm"))
    assert a1.PatientID == a2.PatientID and str(a1.PatientName) == str(a2.PatientName)
    assert a1.PatientID != c.PatientID and str(a1.PatientName) != str(c.PatientName)
    assert a1.StudyInstanceUID != a2.StudyInstanceUID
    again = deidentify_paths([inputs["hand"]], tmp_path / "again", KEY_A)
    twice = deidentify_paths([inputs["hand"]], tmp_path / "twice", KEY_A)
    other = deidentify_paths([inputs["hand"]], tmp_path / "other", KEY_B)
    same = _by_source(again, "a.dcm")
    assert (same.PatientID, str(same.PatientName), same.SOPInstanceUID, same.StudyDate) == \
           (a1.PatientID, str(a1.PatientName), a1.SOPInstanceUID, a1.StudyDate)
    layout = sorted(p.relative_to(again.out) for p in again.written)
    assert layout == sorted(p.relative_to(twice.out) for p in twice.written)
    assert all((again.out / p).read_bytes() == (twice.out / p).read_bytes() for p in layout)  # byte-identical
    moved = _by_source(other, "a.dcm")
    assert moved.PatientID != a1.PatientID and moved.SOPInstanceUID != a1.SOPInstanceUID
    assert moved.StudyDate != a1.StudyDate
    for path in again.written:  # neutral names: pseudonym / study-NN / series-NNN-MOD / NNNNN.dcm
        rel = path.relative_to(again.out)
        assert rel.parts[0].startswith("RS") and rel.parts[1].startswith("study-")
        assert not any(v in str(rel) for v in ("MRN", "Doe", "Roe", "1.2.826", "jane", "richard"))


def test_references_stay_resolvable(run_a, inputs):
    """A SEG's referenced images and frame of reference are the de-identified images; an SR's
    evidence points at the de-identified SEG; the reference between hand-made files holds."""
    images = [pydicom.dcmread(t) for s, t in run_a.copies if s.parent == inputs["images"]]
    seg = pydicom.dcmread(next(t for s, t in run_a.copies if s == inputs["seg"]))
    image_uids = {ds.SOPInstanceUID for ds in images}
    referenced = {i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced and referenced <= image_uids
    per_frame = {src.ReferencedSOPInstanceUID for f in seg.PerFrameFunctionalGroupsSequence
                 for d in f.DerivationImageSequence for src in d.SourceImageSequence}
    assert per_frame <= image_uids
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == images[0].SeriesInstanceUID
    assert {ds.FrameOfReferenceUID for ds in images} == {seg.FrameOfReferenceUID}
    assert {ds.StudyInstanceUID for ds in images} == {seg.StudyInstanceUID}
    sr = pydicom.dcmread(next(t for s, t in run_a.copies if s == inputs["sr"] / "sr.dcm"))
    sr_seg = pydicom.dcmread(next(t for s, t in run_a.copies if s == inputs["sr"] / "seg.dcm"))
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert sr_seg.SOPInstanceUID in evidence
    in_tree = {e.value for _, e in _walk(sr) if e.keyword == "ReferencedSOPInstanceUID"}
    assert sr_seg.SOPInstanceUID in in_tree
    assert _by_source(run_a, "b.dcm").ReferencedImageSequence[0].ReferencedSOPInstanceUID == \
           _by_source(run_a, "a.dcm").SOPInstanceUID


def test_burned_in_and_unreadable_files_reported(run_a, inputs):
    warned = {w.file.name: w.message for w in run_a.warnings}
    assert "Burned In Annotation (0028,0301) is YES" in warned["burned.dcm"]
    assert "secondary capture image and Burned In Annotation (0028,0301) is missing" in warned["unstated.dcm"]
    assert "a.dcm" not in warned and "CTImage.dcm" not in warned
    assert _by_source(run_a, "burned.dcm").PatientIdentityRemoved == "NO"
    assert _by_source(run_a, "a.dcm").PatientIdentityRemoved == "YES"
    reasons = {p.path: p.reason for p in run_a.unreadable}
    assert set(reasons) == {inputs["corrupt"], inputs["truncated"]}
    assert "missing" in reasons[inputs["corrupt"]] and "SOPInstanceUID" in reasons[inputs["corrupt"]]
    assert "damaged" in reasons[inputs["truncated"]]
    assert any(s.warnings for s in run_a.studies)
    assert not any(p.name.endswith(".dcm") for p in (q.path for q in run_a.not_dicom))


def _dciodvfy_errors(path: Path) -> set[str]:
    out = subprocess.run([need_tool("dciodvfy"), str(path)], capture_output=True, text=True, check=False)
    return {line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")}


def test_output_passes_dciodvfy_without_new_errors(run_a, inputs):
    chosen = [(s, t) for s, t in run_a.copies
              if s.suffix in (".dcm", ".seg") and s.name in ("a.dcm", "b.dcm", "label.seg", "sr.dcm", "seg.dcm",
                                                             "IMG0001.dcm", "CTImage.dcm", "seg_image_ct_binary.dcm",
                                                             "sr_document.dcm", "burned.dcm")]
    assert len(chosen) >= 9
    for source, target in chosen:
        new = _dciodvfy_errors(target) - _dciodvfy_errors(source)
        assert not new, f"{source.name}: {sorted(new)}"


def test_key_file_and_errors(tmp_path, inputs, monkeypatch):
    monkeypatch.setenv("RADSIGHT_DATA_DIR", str(tmp_path / "data"))
    made = DeidKey.default()
    key_file = tmp_path / "data" / "deid.key"
    assert key_file.stat().st_mode & 0o077 == 0
    assert DeidKey.default().digest("x", "y") == made.digest("x", "y")
    assert key_file.read_text().strip() not in repr(made)
    short = tmp_path / "short.key"
    short.write_text("tiny")
    with pytest.raises(RadSightError, match="short.key.*at least 32"):
        DeidKey.from_file(short)
    with pytest.raises(RadSightError, match="no such key file"):
        DeidKey.from_file(tmp_path / "missing.key")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(RadSightError, match="not an empty folder"):
        deidentify_paths([inputs["hand"]], tmp_path / "full", KEY_A)


@pytest.mark.slow
def test_cli_on_demo_studies(tmp_path, monkeypatch, capsys):
    """`radsight deid` on the synthetic demo: one pseudonym, intervals in days as generated, key
    file made on first use and never printed, progress on stderr, one-line errors."""
    from viewer.cli import main
    from viewer.demo import generate_demo

    monkeypatch.setenv("RADSIGHT_DATA_DIR", str(tmp_path / "data"))
    demo = generate_demo(tmp_path / "demo", preset="small", n_visits=3, seed=7)
    truth = json.loads(demo.ground_truth_path.read_text())
    originals = [pydicom.dcmread(next(v.study_dir.rglob("*.dcm")), stop_before_pixels=True) for v in demo.visits]
    assert main(["deid", str(tmp_path / "demo"), "--out", str(tmp_path / "out"), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    key = (tmp_path / "data" / "deid.key").read_text().strip()
    assert key not in captured.out and key not in captured.err
    assert "De-identifying" in captured.err
    assert len(data["studies"]) == 3 and len({s["patient_id"] for s in data["studies"]}) == 1
    days = [(_day(o.StudyDate) - _day(originals[0].StudyDate)).days for o in originals]
    assert [s["days_from_first_study"] for s in data["studies"]] == days
    assert days == [v["day"] for v in truth["visits"]]
    assert data["files_written"] == sum(s["files"] for s in data["studies"]) == \
           sum(len(list(v.study_dir.rglob("*.dcm"))) for v in demo.visits)
    assert {Path(p["file"]).name for p in data["not_dicom"]} >= {"labels.nii.gz", "ground_truth.json"}
    assert not data["unreadable"] and not data["warnings"]
    dates = [str(o.StudyDate) for o in originals]
    for path in (tmp_path / "out").rglob("*.dcm"):
        raw = path.read_bytes()
        assert not any(d.encode() in raw for d in dates)
        assert b"SYNTHETIC^DEMO" not in raw and originals[0].PatientID.encode() not in raw
    with pytest.raises(SystemExit):
        main(["deid", "--out", str(tmp_path / "o2")])
    assert main(["deid", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o3")]) != 0
    assert main(["deid", str(tmp_path / "demo"), "--out", str(tmp_path / "o4"), "--key-file",
                 str(tmp_path / "nokey")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("radsight deid: error:") and "nokey" in err[-1]
