"""A folder of broken input mixed with one good series: every bad file gets a one-line reason that
names it, the good series loads, and the CLI prints no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.dicom_factory import write_series
from viewer.dicom import load, open_path


def _non_image(path, sop_class, modality):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = modality, generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_testdata):
    root = tmp_path_factory.mktemp("bad")
    good = write_series(root / "good", shape_zyx=(8, 16, 16))
    src = good["paths"][0]
    bad = root / "bad"
    bad.mkdir()
    (bad / "zero.dcm").write_bytes(b"")
    (bad / "random.bin").write_bytes(np.random.default_rng(0).bytes(5000))
    data = src.read_bytes()
    (bad / "truncated.dcm").write_bytes(data[: len(data) - 100])
    (bad / "header_cut.dcm").write_bytes(data[:300])
    # A valid data set without the 128-byte preamble and 'DICM': readable, leniently.
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID = generate_uid()
    ds.ImagePositionPatient = [0, 0, 500]
    ds.SeriesInstanceUID = generate_uid()
    del ds.file_meta  # a bare data set, as old ACR-NEMA-era exports write them
    ds.preamble = None
    ds.save_as(bad / "no_preamble.dcm", implicit_vr=False, little_endian=True, enforce_file_format=False)
    assert (bad / "no_preamble.dcm").read_bytes()[128:132] != b"DICM"
    # Pixel Data shorter than Rows x Columns x BitsAllocated says.
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(bad / "short_pixels.dcm")
    # Image header without pixels.
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    del ds.PixelData
    ds.save_as(bad / "no_pixels.dcm")
    # Proprietary compression: a private transfer syntax UID with encapsulated data.
    ds = pydicom.dcmread(src)
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.113619.5.99"
    ds.save_as(bad / "proprietary.dcm", enforce_file_format=True)
    # Non-image objects.
    shutil.copy(shared_testdata / "seg_sr" / "highdicom" / "sr_document.dcm", bad / "report_sr.dcm")
    _non_image(bad / "rtstruct.dcm", "1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT")
    _non_image(bad / "gsps.dcm", "1.2.840.10008.5.1.4.1.1.11.1", "PR")
    # A DICOMDIR whose records point at a file that was then removed.
    media = root / "media"
    fs = FileSet()
    for p in write_series(root / "staging", shape_zyx=(5, 8, 8), marker_ijk=(1, 1, 1))["paths"]:
        fs.add(p)
    fs.write(media)
    referenced = sorted(p for p in media.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    assert len(referenced) == 5
    referenced[2].unlink()  # the middle slice (files are named in the order they were added)
    shutil.rmtree(root / "staging")
    return root, good


EXPECTED = {
    "zero.dcm": "empty file (0 bytes)",
    "random.bin": "not a DICOM file",
    "truncated.dcm": "file truncated",
    "header_cut.dcm": "incomplete CT Image Storage object",
    "short_pixels.dcm": "header and pixels disagree",
    "no_pixels.dcm": "no Pixel Data",
    "proprietary.dcm": "cannot decode",
}


def test_every_bad_file_has_a_reason_and_good_series_loads(corpus):
    root, good = corpus
    series, result = open_path(root)
    reasons = {p.path.name: p.reason for p in result.problems}
    for name, fragment in EXPECTED.items():
        assert name in reasons, f"{name} was not reported; got {sorted(reasons)}"
        assert fragment in reasons[name]
        assert "\n" not in reasons[name]
    assert any("listed in DICOMDIR" in p.reason for p in result.problems)
    kinds = {o.path.name: o.kind for o in result.non_image}
    assert kinds["report_sr.dcm"].startswith("Comprehensive 3D SR")
    assert kinds["rtstruct.dcm"] == "RT Structure Set Storage"
    assert "Presentation State" in kinds["gsps.dcm"]
    keys = {s.first.series_uid for s in series}
    assert good["series_uid"] in keys
    vol = load(root, series_uid=good["series_uid"])
    assert vol.shape == (8, 16, 16) and vol.warnings == ()
    # The file without preamble is read leniently as its own one-slice series.
    assert any(r.path.name == "no_preamble.dcm" for s in series for r in s.records)


def test_cli_reports_problems_without_traceback(corpus):
    root, _ = corpus
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "info", str(root), "--json", "--no-index"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert {p["file"].rsplit("/", 1)[-1] for p in data["unreadable"]} >= set(EXPECTED)


def test_cli_bad_path_is_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "info", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such file or folder" in proc.stderr


def test_load_of_folder_without_images_names_the_problems(tmp_path):
    (tmp_path / "a.dcm").write_bytes(b"junk" * 10)
    with pytest.raises(Exception) as info:
        load(tmp_path)
    assert "no loadable image series" in str(info.value) and "a.dcm" in str(info.value)


def test_load_through_the_dicomdir_path_itself(corpus):
    root, _ = corpus
    vol = load(root / "media" / "DICOMDIR")
    assert vol.shape == (5, 8, 8)  # the middle slice's file is missing: interpolated, and said so
    assert "1 slice(s) may be missing" in {w.code: w.message for w in vol.warnings}["nonuniform_spacing"]


def test_info_on_pydicoms_bundled_corpus():
    """pydicom's test files: many vendors, encodings and deliberately broken files."""
    from pathlib import Path

    folder = Path(pydicom.data.__file__).parent / "test_files"
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "info", str(folder), "--json", "--no-index"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    reasons = {p["file"].rsplit("/", 1)[-1]: p["reason"] for p in data["unreadable"]}
    assert "file truncated" in reasons["MR_truncated.dcm"]
    assert len(data["series"]) > 30
    ct_small = [s for s in data["series"] if s["description"] == "" and s["shape_zyx"] == [1, 128, 128]]
    assert ct_small, "CT_small.dcm should be listed"
    assert {"study_uid", "series_keys"} <= set(data["studies"][0])
