"""The fast header reader must give exactly the records pydicom's full reader gives.

Run over every real file at hand: pydicom's bundled test files (many vendors, encodings and
broken files), shared/testdata (cornerstone3D, highdicom, dcmqi), and series written here.
"""

from __future__ import annotations

from pathlib import Path

import pydicom.data
import pytest

from tests.dicom_factory import write_series
from viewer.core.errors import DicomReadError
from viewer.dicom.fastheader import read_header
from viewer.dicom.scan import read_records


def _outcome(path: Path, fast: bool):
    try:
        return read_records(path, fast=fast)
    except DicomReadError as exc:
        return ("error", exc.reason)


def _corpus(shared: Path, tmp: Path) -> list[Path]:
    pydicom_files = Path(pydicom.data.__file__).parent / "test_files"
    write_series(tmp / "implicit-free", shape_zyx=(3, 16, 16), marker_ijk=(1, 1, 1))
    files = [p for root in (pydicom_files, shared, tmp) for p in sorted(root.rglob("*"))
             if p.is_file() and not p.name.startswith(".")]
    return files


def test_fast_reader_agrees_with_pydicom(shared_testdata, tmp_path):
    files = _corpus(shared_testdata, tmp_path)
    assert len(files) > 100
    used_fast = 0
    for path in files:
        if read_header(path) is not None:
            used_fast += 1
        assert _outcome(path, True) == _outcome(path, False), path
    # The common case must really take the fast path, or the benchmark measures nothing.
    assert used_fast >= 60, used_fast


@pytest.mark.parametrize("name", ["CTImage.dcm", "CTImage.dcm_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm",
                                  "CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm"])
def test_fast_reader_handles_common_syntaxes(shared_testdata, name):
    parsed = read_header(shared_testdata / "transfer_syntaxes" / name)
    assert parsed is not None
    values, ts, pixel, size = parsed
    assert values.Rows == 512 and values.Modality == "CT" and pixel is not None
