"""The decoded-volume cache: a series read once opens again from disk, and never when its files
changed (real DICOM written to tmp_path and read back)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from tests.dicom_factory import write_series
from viewer.dicom import load, load_series, open_path, volume_cache

HOUR_AGO = time.time() - 3600


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own data folder, so entries and the size limit are its own."""
    monkeypatch.setenv("RADSIGHT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv(volume_cache.ENV_LIMIT, raising=False)
    return tmp_path / "data" / "volume-cache"


def age(*paths: Path, when: float = HOUR_AGO) -> None:
    """Files written seconds ago are 'racy' (volume_cache.RACY_SECONDS) and never cached."""
    for p in paths:
        for f in ([p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]):
            os.utime(f, (when, when))


def aged_series(folder: Path, **kw) -> dict:
    truth = write_series(folder, **kw)
    age(folder)
    return truth


def counts() -> dict:
    return dict(volume_cache.stats)


def delta(before: dict, key: str) -> int:
    return volume_cache.stats[key] - before.get(key, 0)


def assert_same_volume(a, b) -> None:
    assert np.array_equal(a.voxels, b.voxels) and a.voxels.dtype == b.voxels.dtype
    assert np.array_equal(a.affine, b.affine)
    assert (a.frame_of_reference_uid, a.source, a.warnings, a.display, a.unit) == \
           (b.frame_of_reference_uid, b.source, b.warnings, b.display, b.unit)


def test_second_load_comes_from_the_cache_unchanged(tmp_path):
    aged_series(tmp_path / "s")
    first = load(tmp_path / "s")
    before = counts()
    seen = []
    again = load(tmp_path / "s", progress=lambda k, n, _: seen.append((k, n)))
    assert delta(before, "reopen") == 1 and delta(before, "miss") == 0
    assert seen and seen[-1][0] == seen[-1][1]  # completion is reported on a hit too
    assert_same_volume(again, first)
    assert_same_volume(again, load(tmp_path / "s", use_cache=False))
    # After a header scan (the viewer's path), load_series hits the same entry.
    series, _ = open_path(tmp_path / "s")
    before = counts()
    assert_same_volume(load_series(series[0]), first)
    assert delta(before, "hit") == 1


def entries(cache: Path) -> list[Path]:
    volume_cache.wait()
    return [p for p in cache.glob("*.json") if not p.name.endswith(".path.json")]


def test_rewritten_file_is_read_again(tmp_path, own_cache):
    truth = aged_series(tmp_path / "s")
    load(tmp_path / "s")
    path = truth["paths"][3]
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.copy()
    pixels[2, 3] = 1500 + 1024  # same size, other pixels
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    age(path, when=HOUR_AGO + 10)
    before = counts()
    volume = load(tmp_path / "s")
    assert delta(before, "reopen") == 0 and delta(before, "hit") == 0 and delta(before, "miss") == 1
    assert volume.voxels[3, 2, 3] == 1500
    assert len(entries(own_cache)) == 1  # the stale entry is gone, not left to the LRU
    assert_same_volume(volume, load(tmp_path / "s", use_cache=False))
    before = counts()
    assert load(tmp_path / "s").voxels[3, 2, 3] == 1500
    assert delta(before, "reopen") == 1  # the new entry replaced the stale one


def test_deleted_and_added_files_invalidate(tmp_path):
    truth = aged_series(tmp_path / "s", shape_zyx=(9, 20, 24))
    spare = tmp_path / "spare.dcm"
    shutil.move(truth["paths"][-1], spare)
    assert load(tmp_path / "s").shape[0] == 8
    shutil.move(spare, truth["paths"][-1])  # added
    before = counts()
    assert load(tmp_path / "s").shape[0] == 9
    assert delta(before, "reopen") == 0 and delta(before, "miss") == 1
    truth["paths"][-1].unlink()  # deleted: the 8-slice entry is valid again
    before = counts()
    assert load(tmp_path / "s").shape[0] == 8
    assert delta(before, "reopen") == 0 and delta(before, "hit") == 1
    (tmp_path / "s" / "notes.txt").write_text("not DICOM")  # any new file: headers scanned again
    age(tmp_path / "s")
    before = counts()
    assert load(tmp_path / "s").shape[0] == 8
    assert delta(before, "reopen") == 0 and delta(before, "hit") == 1


@pytest.mark.parametrize("damage", ["json", "edited", "npy", "foreign"])
def test_damaged_entry_is_discarded_and_series_read_again(tmp_path, own_cache, damage, caplog):
    aged_series(tmp_path / "a", seed=1)
    aged_series(tmp_path / "b", seed=2, shape_zyx=(6, 20, 24))
    reference = load(tmp_path / "a")
    (entry,) = entries(own_cache)
    npy = entry.with_suffix(".npy")
    if damage == "json":
        entry.write_bytes(entry.read_bytes()[:40])
    elif damage == "edited":  # still valid JSON, but not what was written
        entry.write_text(entry.read_text().replace("SYNTHETIC TEST", "SYNTHETIC TESX"))
    elif damage == "npy":
        npy.write_bytes(npy.read_bytes()[:-100])
    else:  # another series' entry under this key
        load(tmp_path / "b")
        (other,) = [p for p in entries(own_cache) if p != entry]
        shutil.copy(other, entry)
        shutil.copy(other.with_suffix(".npy"), npy)
    before = counts()
    volume = load(tmp_path / "a")
    assert delta(before, "discarded") == 1 and delta(before, "miss") == 1
    assert "discarded" in caplog.text
    assert_same_volume(volume, reference)
    assert_same_volume(load(tmp_path / "a"), reference)  # stored afresh


def test_lru_eviction_keeps_the_limit(tmp_path, own_cache, monkeypatch):
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        aged_series(tmp_path / name, seed=seed)
    load(tmp_path / "a")
    volume_cache.wait()
    entry_bytes = sum(p.stat().st_size for p in own_cache.iterdir() if not p.name.endswith(".path.json"))
    limit = int(2.5 * entry_bytes)
    monkeypatch.setenv(volume_cache.ENV_LIMIT, str(limit / 2**20))
    load(tmp_path / "b")
    time.sleep(0.05)
    load(tmp_path / "a")  # a is now used more recently than b
    time.sleep(0.05)
    before = counts()
    load(tmp_path / "c")
    volume_cache.wait()  # entries are finished (fsync, eviction) on a writer thread
    assert delta(before, "evicted") == 1
    held = sum(p.stat().st_size for p in own_cache.iterdir() if not p.name.endswith(".path.json"))
    assert held <= limit
    before = counts()
    load(tmp_path / "a")
    load(tmp_path / "c")
    assert delta(before, "reopen") == 2
    load(tmp_path / "b")
    assert delta(before, "miss") == 1  # b was the least recently used


def test_writing_into_returned_voxels_leaves_the_cache_alone(tmp_path):
    aged_series(tmp_path / "s")
    decoded = load(tmp_path / "s")
    original = decoded.voxels.copy()
    decoded.voxels[:] = 7  # the freshly decoded array, already stored
    cached = load(tmp_path / "s")
    assert np.array_equal(cached.voxels, original)
    cached.voxels[0] = -5  # copy-on-write map of the entry
    assert np.array_equal(load(tmp_path / "s").voxels, original)


def test_cache_off_by_env_or_argument(tmp_path, own_cache, monkeypatch):
    aged_series(tmp_path / "s")
    before = counts()
    load(tmp_path / "s", use_cache=False)
    load(tmp_path / "s", use_cache=False)
    assert not own_cache.exists()
    monkeypatch.setenv(volume_cache.ENV_LIMIT, "0")
    load(tmp_path / "s")
    load(tmp_path / "s")
    assert not own_cache.exists() and counts() == before


def test_freshly_written_files_are_not_trusted(tmp_path, own_cache):
    write_series(tmp_path / "s")  # mtimes of now: a rewrite within the timestamp tick is invisible
    before = counts()
    load(tmp_path / "s")
    load(tmp_path / "s")
    assert delta(before, "store") == 0 and delta(before, "reopen") == 0 and delta(before, "hit") == 0


def test_leftover_temp_files_are_ignored_and_cleaned(tmp_path, own_cache):
    aged_series(tmp_path / "a", seed=1)
    aged_series(tmp_path / "b", seed=2)
    reference = load(tmp_path / "a", use_cache=False)
    own_cache.mkdir(parents=True, mode=0o700)
    stale = own_cache / f"{volume_cache.TEMP_PREFIX}dead-0123.npy"
    stale.write_bytes(b"\x93NUMPY half written")
    age(stale)
    running = own_cache / f"{volume_cache.TEMP_PREFIX}live-4567.npy"  # another process writing now
    running.write_bytes(b"\x93NUMPY")
    assert_same_volume(load(tmp_path / "a"), reference)
    volume_cache.wait()
    assert not stale.exists() and running.exists()
    # An .npy whose JSON never got written (crash between the two renames) is never read.
    (entry,) = entries(own_cache)
    entry.unlink()
    before = counts()
    assert_same_volume(load(tmp_path / "a"), reference)
    assert delta(before, "miss") == 1


def test_files_are_private(tmp_path, own_cache):
    aged_series(tmp_path / "s")
    old = os.umask(0o022)
    try:
        load(tmp_path / "s")
        volume_cache.wait()
    finally:
        os.umask(old)
    assert stat.S_IMODE(own_cache.stat().st_mode) == 0o700
    files = list(own_cache.iterdir())
    assert len(files) == 3  # .npy, .json, .path.json
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


def test_several_series_keep_their_choice_and_warning(tmp_path):
    big = aged_series(tmp_path / "s" / "big", shape_zyx=(10, 20, 24), seed=1, series_number=1)
    small = aged_series(tmp_path / "s" / "small", shape_zyx=(6, 20, 24), seed=2, series_number=2,
                        study_uid=big["study_uid"])
    first = load(tmp_path / "s")
    chosen = load(tmp_path / "s", series_uid=small["series_uid"])
    before = counts()
    again = load(tmp_path / "s")
    again_small = load(tmp_path / "s", series_uid=small["series_uid"])
    assert delta(before, "reopen") == 2
    assert again.shape[0] == 10 and again_small.shape[0] == 6
    assert any(w.code == "several_series" for w in again.warnings)
    assert not any(w.code == "several_series" for w in again_small.warnings)
    assert_same_volume(again, first)
    assert_same_volume(again_small, chosen)


def test_volume_with_undecodable_frames_is_not_cached(tmp_path):
    folder = tmp_path / "s"
    truth = write_series(folder, shape_zyx=(8, 40, 48))
    rng = np.random.default_rng(1)
    for path in truth["paths"]:
        ds = pydicom.dcmread(path)
        noisy = ds.pixel_array + rng.integers(0, 200, size=ds.pixel_array.shape, dtype=np.int16)
        ds.compress(RLELossless, noisy.astype(np.int16))
        ds.save_as(path, enforce_file_format=True)
    bad = truth["paths"][4]
    data = bytearray(bad.read_bytes())
    data[-400:] = b"\xff" * 400  # the RLE segment's tail: a decode error, the header still reads
    bad.write_bytes(bytes(data[:-200]))
    age(folder)
    before = counts()
    for _ in range(2):
        volume = load(folder)
        assert any(w.code == "undecodable_frames" for w in volume.warnings)
    assert delta(before, "store") == 0 and delta(before, "hit") == 0 and delta(before, "reopen") == 0
