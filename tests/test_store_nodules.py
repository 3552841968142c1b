"""Nodules and the reader's decisions on them in the local database: kept across reopening, with
the whole decision history, and an existing database of the previous schema migrates in place."""

from __future__ import annotations

import getpass
import sqlite3
from datetime import datetime, timezone

import numpy as np
import pytest

from viewer.core.measurements import Measurement
from viewer.core.volume import Volume
from viewer.store import SCHEMA_VERSION, Store
from viewer.store.migrations import MIGRATIONS

RECORD = {"id": "N1", "tracking_uid": "2.25.1", "centre_lps_mm": [10.0, -5.0, 30.0], "volume_mm3": 268.1,
          "long_axis_mm": 9.1, "short_axis_mm": 7.2, "mean_diameter_mm": 8.2, "mean_hu": 20.0, "type": "solid",
          "scores": {}, "lung_rads": "4A", "prior": None}


def mask_volume() -> Volume:
    z, y, x = np.mgrid[:9, :11, :13]
    voxels = ((x - 6) ** 2 + (y - 5) ** 2 + (z - 4) ** 2 <= 12).astype(np.uint8)
    affine = np.diag([0.7, 0.7, 1.25, 1.0])
    affine[:3, 3] = (4.0, -9.0, 25.0)
    return Volume(voxels, affine, "1.2.3.4")


def test_nodules_and_decisions_persist_across_reopen(tmp_path):
    path = tmp_path / "db.sqlite3"
    mask = mask_volume()
    with Store(path) as store:
        ai = store.save_nodule("s1", RECORD, "ai", mask=mask, model={"id": "radsight-demo-nodule-seg", "version": "1.0"},
                               confidence=0.83)
        measured = store.save_nodule("s1", dict(RECORD, id="N2", tracking_uid=""), "measured")
        store.save_nodule("s2", RECORD, "measured")
        assert [n["id"] for n in store.nodules("s1")] == [ai, measured]
        assert store.nodules("s1")[0]["decision"] is None  # pending until the reader decides
        before = datetime.now(timezone.utc)
        store.decide_nodule(ai, "accepted")
        edited = dict(RECORD, volume_mm3=200.0)
        smaller = mask.with_voxels(np.where(np.arange(13) < 6, mask.voxels, 0).astype(np.uint8))
        store.decide_nodule(ai, "edited", record=edited, user="reader2", mask=smaller)
        store.decide_nodule(measured, "rejected")
    with Store(path) as store:
        first, second = store.nodules("s1")
        assert first["source"] == "ai" and (first["model_id"], first["model_version"]) == ("radsight-demo-nodule-seg", "1.0")
        assert first["confidence"] == pytest.approx(0.83) and first["tracking_uid"] == "2.25.1"
        assert first["record"] == RECORD and first["current"]["volume_mm3"] == 200.0
        assert first["decision"]["decision"] == "edited" and first["decision"]["user"] == "reader2"
        history = store.nodule_decisions(first["id"])
        assert [d["decision"] for d in history] == ["accepted", "edited"]
        assert history[0]["user"] == getpass.getuser() and history[0]["record"] is None
        at = datetime.fromisoformat(history[0]["at"].replace("Z", "+00:00"))
        assert at.tzinfo is not None and abs((at - before).total_seconds()) < 60
        stored = store.nodule_mask(first["id"])
        assert np.array_equal(stored.voxels, smaller.voxels) and np.allclose(stored.affine, mask.affine)
        assert stored.frame_of_reference_uid == "1.2.3.4"
        assert second["source"] == "measured" and second["decision"]["decision"] == "rejected"
        assert store.nodule_mask(second["id"]) is None
        store.delete_nodule(first["id"])
        assert [n["id"] for n in store.nodules("s1")] == [second["id"]]
        assert store.nodule_decisions(first["id"]) == []  # decisions go with their nodule
        assert len(store.nodules("s2")) == 1


def test_bad_nodules_and_decisions_are_refused(tmp_path):
    with Store(tmp_path / "db.sqlite3") as store:
        with pytest.raises(ValueError, match="source must be one of"):
            store.save_nodule("s1", RECORD, "guessed")
        with pytest.raises(ValueError, match="needs the model"):
            store.save_nodule("s1", RECORD, "ai")
        nodule = store.save_nodule("s1", RECORD, "measured")
        with pytest.raises(ValueError, match="decision must be one of"):
            store.decide_nodule(nodule, "maybe")
        with pytest.raises(ValueError, match="needs the edited record"):
            store.decide_nodule(nodule, "edited")
        with pytest.raises(Exception, match="no nodule nope"):
            store.decide_nodule("nope", "accepted")
        assert store.nodule_decisions(nodule) == []


def test_a_database_of_the_previous_schema_migrates_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    previous = 3
    db = sqlite3.connect(path)
    for n, script in enumerate(MIGRATIONS[:previous]):
        db.executescript("BEGIN;" + script + f"; PRAGMA user_version = {n + 1}; COMMIT;")
    db.execute("INSERT INTO measurements(id, series_key, kind, points_json) VALUES ('m1', 's1', 'line', '[[0,0,0],[5,0,0]]')")
    db.commit()
    assert "nodules" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.measurements("s1") == [Measurement("line", ((0, 0, 0), (5, 0, 0)), "", "m1")]
        nodule = store.save_nodule("s1", RECORD, "measured")
        store.decide_nodule(nodule, "accepted")
    with Store(path) as store:  # reopening does not migrate again
        assert store.schema_version == SCHEMA_VERSION
        assert store.nodules("s1")[0]["decision"]["decision"] == "accepted"


def test_tracking_uid_set_later_is_kept_in_column_and_record(tmp_path):
    with Store(tmp_path / "db.sqlite3") as store:
        nodule_id = store.save_nodule("series-1", {"id": "N1", "tracking_uid": None, "centre_lps_mm": [1, 2, 3],
                                                   "volume_mm3": 50.0, "mean_diameter_mm": 4.6}, "measured")
        store.set_nodule_tracking_uid(nodule_id, "2.25.1234")
    with Store(tmp_path / "db.sqlite3") as store:
        row = store.nodules("series-1")[0]
        assert row["tracking_uid"] == "2.25.1234" and row["record"]["tracking_uid"] == "2.25.1234"
