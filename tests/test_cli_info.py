"""`radsight info --json` follows DESIGN.md's contract and agrees with SimpleITK within 1e-3 mm."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from tests.dicom_factory import write_series

CONTRACT_KEYS = {"series_uid", "study_uid", "modality", "shape_zyx", "spacing_xyz", "origin_lps", "direction",
                 "frame_of_reference_uid", "file_count", "warnings"}


def run_info(path):
    proc = subprocess.run([sys.executable, "-m", "viewer.cli", "info", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_info_contract_and_simpleitk_agreement(tmp_path):
    truth = write_series(tmp_path, shape_zyx=(9, 20, 24), orientation=(0.8, 0.6, 0, 0, 0, -1),
                         origin=(12.5, -3.25, 40.0), step=1.75)
    data = run_info(tmp_path)
    assert set(data) >= {"series", "unreadable"}
    (entry,) = data["series"]
    assert CONTRACT_KEYS <= set(entry)
    assert entry["series_uid"] == truth["series_uid"] and entry["file_count"] == 9
    assert entry["shape_zyx"] == [9, 20, 24]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    np.testing.assert_allclose(entry["origin_lps"], image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(entry["spacing_xyz"], image.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(entry["direction"], image.GetDirection(), atol=1e-6)


def test_info_indexes_the_study(tmp_path):
    write_series(tmp_path / "s")
    run_info(tmp_path / "s")
    from viewer.store import Store

    with Store() as store:
        assert any(s["file_count"] == 12 for s in store.series_summaries())
