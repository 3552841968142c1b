"""The local study index: migrations, idempotent import, reload from the index."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from tests.dicom_factory import write_series
from viewer.core.errors import RadSightError
from viewer.dicom import load_series, open_path
from viewer.store import SCHEMA_VERSION, Store


def _dump(store: Store) -> list:
    return [list(store.db.execute(f"SELECT * FROM {t} ORDER BY 1, 2")) for t in ("studies", "series", "frames", "file_problems")]


def test_import_twice_changes_nothing(tmp_path):
    truth = write_series(tmp_path / "in" / "s1")
    write_series(tmp_path / "in" / "s2", series_number=2, study_uid=truth["study_uid"], seed=2)
    (tmp_path / "in" / "junk.dcm").write_bytes(b"not dicom")
    with Store(tmp_path / "db.sqlite3") as store:
        first = store.import_scan(*open_path(tmp_path / "in"))
        snapshot = _dump(store)
        again = store.import_scan(*open_path(tmp_path / "in"))
        assert first["changes"] > 0 and again["changes"] == 0
        assert _dump(store) == snapshot
        assert store.table_counts() == {"studies": 1, "series": 2, "frames": 24, "file_problems": 1}
        assert store.schema_version == SCHEMA_VERSION


def test_indexed_series_reloads_without_rescan_and_notices_changes(tmp_path):
    truth = write_series(tmp_path / "s")
    series, result = open_path(tmp_path / "s")
    with Store(tmp_path / "db.sqlite3") as store:
        store.import_scan(series, result)
        again = store.indexed_series(series[0].key)
        assert again is not None
        a, b = load_series(series[0]), load_series(again)
        np.testing.assert_array_equal(a.voxels, b.voxels)
        np.testing.assert_allclose(a.affine, b.affine)
        truth["paths"][0].write_bytes(truth["paths"][0].read_bytes())  # touched: mtime changes
        import os

        os.utime(truth["paths"][0], ns=(1, 1))
        assert store.indexed_series(series[0].key) is None


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    db = tmp_path / "db.sqlite3"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    con.commit()
    con.close()
    with pytest.raises(RadSightError, match="newer than this RadSight understands"):
        Store(db)


def test_default_location_follows_data_dir_override(tmp_path, monkeypatch):
    monkeypatch.setenv("RADSIGHT_DATA_DIR", str(tmp_path / "data"))
    with Store() as store:
        assert store.path == tmp_path / "data" / "radsight.sqlite3"
