"""Compressed series decode on several threads: same voxels as one thread, slice order kept for
progress, a corrupt frame reported by name, and a cancel that stops early."""

from __future__ import annotations

import os
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from tests.dicom_factory import write_series
from viewer.core.errors import RadSightError
from viewer.dicom import load_series, open_path
from viewer.dicom.pixels import FrameReader

loader = sys.modules["viewer.dicom.load"]


@pytest.fixture(autouse=True)
def _no_volume_cache(monkeypatch):
    monkeypatch.setenv("RADSIGHT_VOLUME_CACHE_MB", "0")  # measure decoding, not the cache


def _compressed_series(folder, syntax, slices=24):
    truth = write_series(folder, shape_zyx=(slices, 40, 48), seed=3)
    rng = np.random.default_rng(1)
    for path in truth["paths"]:
        ds = pydicom.dcmread(path)
        noisy = ds.pixel_array + rng.integers(0, 200, size=ds.pixel_array.shape, dtype=np.int16)
        ds.compress(syntax, noisy.astype(np.int16), encoding_plugin={JPEGLSLossless: "pyjpegls", JPEG2000Lossless: "pylibjpeg"}.get(syntax, ""))
        ds.save_as(path, enforce_file_format=True)
    series, _ = open_path(folder)
    return series[0], truth


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless, RLELossless], ids=["jpeg-ls", "jpeg2000", "rle"])
def test_parallel_equals_serial(tmp_path, monkeypatch, syntax):
    series, _ = _compressed_series(tmp_path / "s", syntax)
    if syntax != RLELossless:  # RLE's decoder holds the GIL: one thread (see _decode_workers)
        assert loader._decode_workers(series.plan.records) >= min(2, len(os.sched_getaffinity(0)))
    seen = []
    parallel = load_series(series, progress=lambda k, n, _: seen.append(k))
    assert seen == sorted(seen) and seen[-1] == len(series.records)
    monkeypatch.setattr(loader, "_decode_workers", lambda records: 1)
    serial = load_series(series)
    assert np.array_equal(parallel.voxels, serial.voxels)
    reference = np.stack([pydicom.dcmread(r.path).pixel_array.astype(np.int32) + int(r.rescale_intercept)
                          for r in series.plan.records])
    assert np.array_equal(parallel.voxels, reference)


def test_corrupt_frame_named_rest_loaded(tmp_path):
    series, truth = _compressed_series(tmp_path / "s", JPEGLSLossless, slices=12)
    bad = series.plan.records[5].path
    data = bytearray(bad.read_bytes())
    soi = data.rindex(b"\xff\xd8\xff")  # the JPEG-LS stream's start: break its frame header
    data[soi + 2:soi + 18] = b"\xaa" * 16
    bad.write_bytes(bytes(data))
    series, _ = open_path(tmp_path / "s")
    volume = load_series(series[0])
    notes = [w for w in volume.warnings if w.code == "undecodable_frames"]
    assert notes and bad.name in notes[0].message


def test_cancel_stops_before_the_end(tmp_path, monkeypatch):
    series, _ = _compressed_series(tmp_path / "s", JPEGLSLossless, slices=64)
    calls = []
    real = FrameReader.read_into
    monkeypatch.setattr(FrameReader, "read_into", lambda self, r, out: (calls.append(r), real(self, r, out)))
    progress = []
    with pytest.raises(RadSightError, match="cancelled"):
        load_series(series, progress=lambda k, n, _: progress.append(k), cancelled=lambda: len(calls) >= 3)
    assert len(calls) < len(series.records)
