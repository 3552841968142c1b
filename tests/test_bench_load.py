"""`radsight bench load` runs every row on a small CT it writes and encodes itself, reads each
transfer syntax back identical to SimpleITK, and measures a user's own folder with --series."""

from __future__ import annotations

import json

import pydicom

from tests.cli_run import run_cli
from viewer.bench.load import run_load_benchmark
from viewer.bench.series_maker import ENCODINGS


def test_every_syntax_row_identical_to_simpleitk(tmp_path):
    report = run_load_benchmark(slices=6, repeats=1, workdir=str(tmp_path), log=lambda _m: None)
    rows = report["rows"]
    assert set(rows) == set(ENCODINGS)
    for name, row in rows.items():
        assert "skipped" not in row, (name, row)
        assert row["identical_to_simpleitk"], name
        assert row["slices"] == 6 and row["simpleitk_s"] > 0 and row["radsight_s"] > 0
        assert 0.9 < row["peak_memory_ratio"] < 3, (name, row["peak_memory_ratio"])
    # The folders really hold what the rows say.
    for name, encoding in ENCODINGS.items():
        first = next((tmp_path / name).iterdir())
        assert pydicom.dcmread(first, stop_before_pixels=True).file_meta.TransferSyntaxUID == encoding.uid
    small = next((tmp_path / "explicit-le-small-header").iterdir()).stat().st_size
    vendor = next((tmp_path / "explicit-le").iterdir()).stat().st_size
    assert vendor - small > 1500  # the vendor-sized header and its private block
    assert "jpeg2000" in report["text"] and "re-open" in report["text"]


def test_cli_series_folder(tmp_path):
    run_load_benchmark(slices=5, repeats=1, workdir=str(tmp_path / "w"), syntaxes=("jpeg-ls",), log=lambda _m: None)
    out = run_cli("bench", "load", "--series", str(tmp_path / "w" / "jpeg-ls"), "--repeat", "1", "--json")
    rows = json.loads(out)["rows"]
    assert list(rows) == [str(ENCODINGS["jpeg-ls"].uid)]
    assert rows[str(ENCODINGS["jpeg-ls"].uid)]["identical_to_simpleitk"]
