"""The per-syntax decoder table (viewer.dicom.decoders) against pydicom's default decode, on the
shared transfer-syntax files and on a real CT frame re-encoded here (HTJ2K included)."""

from __future__ import annotations

import copy
import dataclasses
import threading
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate

from viewer.bench.decoders import encode_dataset
from viewer.core.errors import DicomReadError
from viewer.dicom import decoders
from viewer.dicom.pixels import FrameReader
from viewer.dicom.scan import read_records

LOSSLESS = ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
            "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.5"]
# Lossy: the largest difference from pydicom's default decode of the same bytes (another
# library's IDCT / irreversible wavelet rounds differently by one grey level at most).
LOSSY = {"1.2.840.10008.1.2.4.91": 1, "1.2.840.10008.1.2.4.203": 1, "1.2.840.10008.1.2.4.81": 0,
         "1.2.840.10008.1.2.4.50": 1, "1.2.840.10008.1.2.4.51": 1}


def _pydicom_default(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path).pixel_array


def _decode(path):
    record = read_records(path)[0]
    assert decoders.handles(record), record.transfer_syntax  # the table, not the fallback, decodes it
    return decoders.decode_frame(decoders.FragmentSource().frame(record), record)


@pytest.fixture(scope="module")
def covid_slice(shared_testdata):
    return shared_testdata / "real_ct/covid_ricord_419639-000082/ct_scans/1-100.dcm"


def _write(source_ds, ts, path):
    ds = copy.deepcopy(source_ds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        encode_dataset(ds, ts).save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def native_ct(covid_slice):
    ds = pydicom.dcmread(covid_slice)
    ds.decompress()
    return ds


def test_shared_files_identical_to_pydicom(shared_testdata):
    folder = shared_testdata / "transfer_syntaxes"
    seen = 0
    for path in sorted(p for p in folder.iterdir() if p.name not in ("LICENSE", "CTImage.dcm")):
        record = read_records(path)[0]
        if not decoders.handles(record):
            continue
        seen += 1
        got, ref = _decode(path), _pydicom_default(path)
        assert got.dtype == ref.dtype, path.name
        lossy = record.transfer_syntax in LOSSY or record.transfer_syntax == "1.2.840.10008.1.2.4.53"
        if lossy:
            assert np.abs(got.astype(np.int32) - ref).max() <= 1, path.name
        else:
            np.testing.assert_array_equal(got, ref, err_msg=path.name)
    assert seen == 11  # .90 .91 .80 .81 .57 .70 .50 .51 .5 and the two J2K slices


@pytest.mark.parametrize("ts", LOSSLESS)
def test_real_frame_lossless_identical(native_ct, tmp_path, ts):
    path = _write(native_ct, ts, tmp_path / "f.dcm")
    got = _decode(path)
    np.testing.assert_array_equal(got, _pydicom_default(path))
    np.testing.assert_array_equal(got, native_ct.pixel_array)  # and truly lossless


@pytest.mark.parametrize("ts", sorted(LOSSY))
def test_real_frame_lossy_close(native_ct, tmp_path, ts):
    path = _write(native_ct, ts, tmp_path / "f.dcm")
    got = _decode(path)
    assert np.abs(got.astype(np.int32) - _pydicom_default(path)).max() <= LOSSY[ts]


def test_htj2k_loads_as_hu(native_ct, tmp_path):
    from viewer.dicom import load

    for ts in ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"):
        vol = load(_write(native_ct, ts, tmp_path / f"{ts}.dcm"))
        expected = native_ct.pixel_array.astype(np.int32) + int(native_ct.RescaleIntercept)
        np.testing.assert_array_equal(vol.voxels[0], expected)


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90",
                                "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.70"])
def test_signed_12_bit_in_16_identical(native_ct, tmp_path, ts):
    """Bits Stored 12 < Bits Allocated 16, signed: sign handling must match pydicom's."""
    ds = copy.deepcopy(native_ct)
    arr = np.clip(native_ct.pixel_array, -2048, 2047).astype(np.int16)
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 12, 11, 1
    ds.PixelData = arr.tobytes()
    path = _write(ds, ts, tmp_path / "signed.dcm")
    got = _decode(path)
    np.testing.assert_array_equal(got, _pydicom_default(path))
    np.testing.assert_array_equal(got, arr)
    assert got.min() < 0


def test_falls_back_when_preferred_decoder_fails(native_ct, tmp_path, monkeypatch):
    ts = "1.2.840.10008.1.2.4.80"
    path = _write(native_ct, ts, tmp_path / "f.dcm")

    class Panic(BaseException):  # what pylibjpeg-rle's pyo3 PanicException derives from
        pass

    def boom(src, r):
        raise Panic("decoder panicked")
    first, *rest = decoders.CANDIDATES[ts]
    monkeypatch.setitem(decoders.CANDIDATES, ts, (dataclasses.replace(first, decode=boom), *rest))
    np.testing.assert_array_equal(_decode(path), native_ct.pixel_array)


def test_interrupt_is_not_swallowed(native_ct, tmp_path, monkeypatch):
    ts = "1.2.840.10008.1.2.5"
    path = _write(native_ct, ts, tmp_path / "f.dcm")

    def interrupt(src, r):
        raise KeyboardInterrupt
    first, *rest = decoders.CANDIDATES[ts]
    monkeypatch.setitem(decoders.CANDIDATES, ts, (dataclasses.replace(first, decode=interrupt), *rest))
    with pytest.raises(KeyboardInterrupt):
        _decode(path)


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.80",
                                "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.5"])
def test_corrupt_fragment_names_file_and_syntax(native_ct, tmp_path, ts):
    path = _write(native_ct, ts, tmp_path / "f.dcm")
    ds = pydicom.dcmread(path)
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    # The stream's first marker kept, its header and coded data gone (an RLE header is data).
    ds.PixelData = encapsulate([frame[:64 if ts.endswith(".5") else 2] + b"\x00" * 126])
    ds.save_as(path)
    record = read_records(path)[0]
    out = np.empty((record.rows, record.cols), np.int16)
    with pytest.raises(DicomReadError) as err:
        FrameReader().read_into(record, out)
    assert str(path) in str(err.value) and ts in str(err.value)


def test_threads_decode_same_pixels(shared_testdata):
    """Two threads through one FrameReader give what one thread gives (real JPEG lossless CT)."""
    files = sorted((shared_testdata / "real_ct/covid_ricord_419639-000082/ct_scans").glob("*.dcm"))[:24]
    records = [read_records(p)[0] for p in files]
    assert all(decoders.handles(r) for r in records)
    expected = np.empty((len(records), 512, 512), np.int16)
    for k, r in enumerate(records):
        FrameReader().read_into(r, expected[k])
    got = np.zeros_like(expected)
    reader = FrameReader()
    errors = []

    def work(part):
        try:
            for k in part:
                reader.read_into(records[k], got[k])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(range(i, len(records), 2),)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_array_equal(got, expected)


def test_releases_gil_reports_the_chosen_decoder():
    assert decoders.releases_gil("1.2.840.10008.1.2.4.90") == decoders.decoders_for("1.2.840.10008.1.2.4.90")[0].releases_gil
    assert decoders.releases_gil("1.2.840.10008.1.2.1.99") is False  # deflate: pydicom, whole file
