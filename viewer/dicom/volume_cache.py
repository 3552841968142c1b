"""Decoded volumes kept on disk so that a study read once opens again at once.

An entry is `<key>.npy` (the voxels, opened memory-mapped copy-on-write: nothing is read until
it is looked at, and a caller writing into the voxels never changes the entry) plus `<key>.json`
(everything else a `Volume` holds, and the stamp of every source file). The key hashes the
series' frames in plan order (path, frame, SOP Instance UID), each file's size and mtime_ns, the
planned grid and the warnings, so a changed, added or missing file gives another key and the
series is decoded again. A `<hash>.path.json` remembers what a `load(path)` found: the listing
of the path with every file's stamp; when the listing is unchanged the volume is returned
without parsing a header (`reopen`).

Why hand-written rather than diskcache or joblib.Memory: both hand values back by reading them
whole (pickle); an instant re-open needs the .npy memory-mapped, and the stamps checked on every
use. Entries are written on a writer thread (the load does not wait for the disk) to a temp
file, fsynced and renamed, .npy before .json, so a half-written entry is never read; anything
that does not read back is deleted with a log line and the series is decoded again. Files are
0600 in a 0700 folder: they hold patient images.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from viewer.core.paths import user_data_dir
from viewer.core.private_files import private_dir
from viewer.core.volume import DisplayHints, GeometryWarning, SourceIdentity, Volume
from viewer.dicom.series import Series

log = logging.getLogger(__name__)

FORMAT = 2  # 2: big-endian voxels were byte-swapped in 1. Bump when the entry layout, the key or the decoded voxels change (the package version is in keys too)
ENV_LIMIT = "RADSIGHT_VOLUME_CACHE_MB"
DEFAULT_LIMIT = 8 << 30
DEFAULT_DISK_SHARE = 0.25
# A file modified within this many seconds of its stat could change again without a new mtime
# (timestamps are as coarse as 2 s on FAT, 1 s on HFS+): such a series is not cached, as git
# does with "racily clean" index entries.
RACY_SECONDS = 2.0
STALE_TEMP_SECONDS = 600.0  # a temp file this old is a crashed writer's, not a running one's
TEMP_PREFIX = ".tmp-"

stats: Counter = Counter()  # "hit", "reopen", "miss", "store", "discarded", "evicted": for tests and benches

Stamp = tuple[int, int]  # (size, mtime_ns)


def _package_version() -> str:
    try:
        return metadata.version("radsight")
    except metadata.PackageNotFoundError:
        return "unknown"


_VERSION = f"{FORMAT}/{_package_version()}"


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _is_racy(stamps, now_ns: int) -> bool:
    limit = now_ns - int(RACY_SECONDS * 1e9)
    return any(mtime > limit for _, mtime in stamps)


def _env_limit() -> int | None:
    """$RADSIGHT_VOLUME_CACHE_MB in bytes; None when unset or not a size."""
    value = os.environ.get(ENV_LIMIT, "").strip()
    if not value:
        return None
    try:
        mb = float(value)
    except ValueError:
        mb = -1
    if mb >= 0:
        return int(mb * (1 << 20))
    log.warning("%s=%r is not a size in MB; using the default cache size", ENV_LIMIT, value)
    return None


def limit_bytes(folder: Path) -> int:
    """$RADSIGHT_VOLUME_CACHE_MB (0 disables), else min(8 GiB, 25 % of what the cache in
    `folder` holds plus the disk's free space)."""
    limit = _env_limit()
    if limit is not None:
        return limit
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return 0
    held = sum(size for _, size, _ in _entries(folder))
    return int(min(DEFAULT_LIMIT, DEFAULT_DISK_SHARE * (free + held)))


def _entries(folder: Path) -> list[tuple[str, int, float]]:
    """(key, bytes, last use) of every complete entry."""
    found = []
    for json_path in folder.glob("*.json"):
        if json_path.name.endswith(".path.json"):
            continue
        key = json_path.name[:-5]
        try:
            st = json_path.stat()
            size = st.st_size + (folder / f"{key}.npy").stat().st_size
        except OSError:
            continue
        found.append((key, size, st.st_mtime))
    return found


@dataclass(frozen=True)
class SeriesKey:
    """What identifies one decoded series: the digest and the stamps it was computed from."""

    digest: str
    files: dict[str, Stamp]


@dataclass(frozen=True)
class PathSnapshot:
    """The listing of a path given to `load`, taken before it is scanned."""

    path: str
    series_uid: str | None
    digest: str
    listing: dict[str, Stamp]
    taken_ns: int


class VolumeCache:
    def __init__(self, folder: Path, limit: int | None = None):
        self.folder = Path(folder)
        self._limit = limit

    @classmethod
    def default(cls) -> VolumeCache | None:
        """The cache in the data folder, or None when it is disabled (size 0) or cannot be made."""
        if _env_limit() == 0:
            return None
        folder = user_data_dir() / "volume-cache"
        try:
            private_dir(folder)
        except OSError as exc:
            log.warning("volume cache disabled: cannot create %s (%s)", folder, exc.strerror or exc)
            return None
        return cls(folder)

    @property
    def limit(self) -> int:
        return self._limit if self._limit is not None else limit_bytes(self.folder)

    # -- series entries ---------------------------------------------------------------------

    def key_for(self, series: Series) -> SeriesKey | None:
        """The key of `series` as its files are now; None when a file is missing or racy."""
        plan = series.plan
        files: dict[str, Stamp] = {}
        names = [str(r.path.absolute()) for r in plan.records]
        for name in names:
            if name not in files:
                stamp = _stamp(name)
                if stamp is None:
                    return None
                files[name] = stamp
        if _is_racy(files.values(), time.time_ns()):
            return None
        h = hashlib.sha256(_VERSION.encode())
        h.update(json.dumps([series.key, str(plan.records[0].path.parent),  # quoted by the volume's source
                             [(name, r.frame, r.sop_instance_uid) for name, r in zip(names, plan.records)],
                             sorted(files.items()), [int(v) for v in plan.shape],
                             [(w.code, w.message) for w in series.all_warnings]]).encode())
        for array in (plan.affine, plan.inplane_shift, *(plan.resample or ())):
            if array is not None:
                h.update(np.ascontiguousarray(array).tobytes())
                h.update(str(np.asarray(array).dtype).encode())
        return SeriesKey(h.hexdigest()[:40], files)

    def get(self, key: SeriesKey) -> Volume | None:
        """The cached volume for `key`, or None (a damaged entry is deleted)."""
        entry = self._read(key.digest)
        if entry is None:
            return None
        volume, files = entry
        if files != key.files:
            self._discard(key.digest, "its file stamps do not match its key")
            return None
        self._touch(key.digest)
        stats["hit"] += 1
        return volume

    def put(self, key: SeriesKey, volume: Volume) -> bool:
        """Store `volume` under `key` (crash-safe), then evict the least recently used entries."""
        voxels = np.asarray(volume.voxels)
        limit = self.limit
        if voxels.nbytes > limit:
            return False
        meta = {
            "format": FORMAT, "version": _VERSION, "key": key.digest,
            "files": {p: list(s) for p, s in key.files.items()},
            "shape": list(voxels.shape), "dtype": voxels.dtype.str,
            "affine": np.asarray(volume.affine).tolist(),
            "frame_of_reference_uid": volume.frame_of_reference_uid,
            "source": asdict(volume.source), "warnings": [w.to_json() for w in volume.warnings],
            "display": asdict(volume.display), "unit": volume.unit,
        }
        # The writer thread gets its own copy, so a caller writing into the voxels cannot
        # change the entry, and the load does not wait for the disk (a 150 MB write measured
        # 0.02-1.3 s here, with other jobs writing). One copy at most is in flight: the next
        # put waits for it, so a burst of loads cannot pile copies up in memory.
        wait()
        voxels = np.array(voxels, order="C", copy=True)

        def finish() -> None:
            try:
                self._write(f"{key.digest}.npy", lambda fp: np.lib.format.write_array(fp, voxels, allow_pickle=False))
                self._write(f"{key.digest}.json", lambda fp: fp.write(_dump(meta)))
                _fsync_dir(self.folder)
            except OSError as exc:
                log.warning("volume cache: entry %s not stored (%s)", key.digest, exc.strerror or exc)
                return
            stats["store"] += 1
            self.evict(limit)

        _submit(key.digest, finish)
        return True

    def _read(self, digest: str) -> tuple[Volume, dict[str, Stamp]] | None:
        """The entry's volume and the stamps of its source files; None when absent or damaged."""
        _wait_for(digest)
        json_path = self.folder / f"{digest}.json"
        try:
            meta = _parse(json_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._discard(digest, f"its JSON cannot be read ({exc})")
            return None
        try:
            if meta.get("format") != FORMAT or meta.get("version") != _VERSION or meta.get("key") != digest:
                self._discard(digest, "it was written by another RadSight version or for another key")
                return None
            voxels = np.load(self.folder / f"{digest}.npy", mmap_mode="c", allow_pickle=False)
            if list(voxels.shape) != meta["shape"] or voxels.dtype.str != meta["dtype"]:
                raise ValueError(f"voxels {voxels.shape} {voxels.dtype.str} but the JSON says "
                                 f"{meta['shape']} {meta['dtype']}")
            volume = Volume(
                voxels=voxels, affine=np.asarray(meta["affine"], dtype=np.float64),
                frame_of_reference_uid=meta["frame_of_reference_uid"],
                source=SourceIdentity(**meta["source"]),
                warnings=tuple(GeometryWarning(**w) for w in meta["warnings"]),
                display=DisplayHints(**meta["display"]), unit=meta["unit"])
            files = {str(p): (int(s[0]), int(s[1])) for p, s in meta["files"].items()}
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            self._discard(digest, f"it does not read back ({type(exc).__name__}: {exc})")
            return None
        return volume, files

    # -- re-open of a path without scanning --------------------------------------------------

    def snapshot(self, path: Path, series_uid: str | None) -> PathSnapshot:
        """Every file under `path` (hidden ones too) with its stamp, as it is now."""
        root = str(Path(path).absolute())
        listing: dict[str, Stamp] = {}
        if os.path.isdir(root):
            for folder, _, names in os.walk(root):
                for name in names:
                    full = os.path.join(folder, name)
                    stamp = _stamp(full)
                    if stamp is not None:
                        listing[os.path.relpath(full, root)] = stamp
        else:
            stamp = _stamp(root)
            if stamp is not None:
                listing["."] = stamp
        # The path as given is part of the digest: the volume's source path and warnings quote it.
        digest = hashlib.sha256(json.dumps([_VERSION, root, str(path), series_uid]).encode()).hexdigest()[:40]
        return PathSnapshot(root, series_uid, digest, listing, time.time_ns())

    def reopen(self, snap: PathSnapshot) -> Volume | None:
        """The volume `load(path, series_uid)` returned last time, if nothing under the path
        (nor any file the series came from) changed since; None otherwise."""
        index_path = self.folder / f"{snap.digest}.path.json"
        _wait_for(snap.digest)
        try:
            index = _parse(index_path.read_bytes())
            listing = {p: tuple(s) for p, s in index["listing"].items()}
            entry_key = index["entry"]
            if not _is_digest(entry_key):
                raise ValueError(f"entry {entry_key!r} is not a cache key")
            extra = tuple(GeometryWarning(**w) for w in index["extra_warnings"])
            same = (index["format"] == FORMAT and index["path"] == snap.path
                    and index["series_uid"] == snap.series_uid and listing == snap.listing)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            log.info("volume cache: re-open index %s discarded: %s", snap.digest, exc)
            _unlink(index_path)
            stats["discarded"] += 1
            return None
        if not same:
            self._drop_if_stale(entry_key, snap)
            return None
        entry = self._read(entry_key)
        if entry is None:
            return None
        volume, files = entry
        for name, stamp in files.items():
            if _listed_stamp(snap, name) != stamp:
                self._discard(entry_key, "a source file changed")
                return None
        self._touch(entry_key)
        stats["reopen"] += 1
        if extra:
            volume = Volume(volume.voxels, volume.affine, volume.frame_of_reference_uid, volume.source,
                            volume.warnings + extra, volume.display, volume.unit)
        return volume

    def _drop_if_stale(self, digest: str, snap: PathSnapshot) -> None:
        """Delete the entry a changed path led to when one of its own files changed: it can
        never be used again, so it should not wait for the LRU to go."""
        try:
            files = _parse((self.folder / f"{digest}.json").read_bytes())["files"]
        except (OSError, ValueError, TypeError, KeyError):
            return
        if any(_listed_stamp(snap, name) != tuple(stamp) for name, stamp in files.items()):
            log.info("volume cache: entry %s removed: a source file changed", digest)
            self._remove(digest)

    def remember(self, snap: PathSnapshot, key: SeriesKey, extra_warnings: tuple[GeometryWarning, ...]) -> None:
        """Note that `load(snap.path, snap.series_uid)` gave entry `key` plus `extra_warnings`.

        Only when the listing was not racy, holds every file of the series and agrees with the
        stamps the series was keyed by: then an unchanged listing means an unchanged scan.
        """
        if _is_racy(snap.listing.values(), snap.taken_ns):
            return
        if any(_listed_stamp(snap, name) != stamp for name, stamp in key.files.items()):
            return
        index = {"format": FORMAT, "path": snap.path, "series_uid": snap.series_uid, "entry": key.digest,
                 "listing": {p: list(s) for p, s in snap.listing.items()},
                 "extra_warnings": [w.to_json() for w in extra_warnings]}

        def write() -> None:  # after the entry's own write: the writer thread runs in order
            try:
                self._write(f"{snap.digest}.path.json", lambda fp: fp.write(_dump(index)))
            except OSError as exc:
                log.warning("volume cache: re-open index not stored (%s)", exc.strerror or exc)

        _submit(snap.digest, write)

    # -- housekeeping -------------------------------------------------------------------------

    def evict(self, limit: int | None = None) -> None:
        """Delete stale temp files, orphans and the least recently used entries over the limit."""
        limit = self.limit if limit is None else limit
        now = time.time()
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        complete = {n[:-5] for n in names if n.endswith(".json") and not n.endswith(".path.json")}
        for name in names:
            full = self.folder / name
            if name.startswith(TEMP_PREFIX) or (name.endswith(".npy") and name[:-4] not in complete):
                try:
                    if now - full.stat().st_mtime > STALE_TEMP_SECONDS:
                        full.unlink()
                except OSError:
                    pass
        entries = sorted(_entries(self.folder), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        for key, size, _ in entries:
            if total <= limit:
                break
            self._remove(key)
            stats["evicted"] += 1
            total -= size
        with _lock:
            live = {key for key, _, _ in _entries(self.folder)} | set(_pending)
        for index_path in self.folder.glob("*.path.json"):
            try:
                if _parse(index_path.read_bytes()).get("entry") not in live:
                    index_path.unlink()
            except (OSError, ValueError, AttributeError):
                _unlink(index_path)

    def _write(self, name: str, fill) -> None:
        """Write `name` durably: a 0600 temp file, fsync, rename; never half a file under `name`."""
        tmp = self.folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        try:
            with os.fdopen(fd, "wb") as fp:
                fill(fp)
                fp.flush()
                os.fsync(fp.fileno())
            os.replace(tmp, self.folder / name)
        except BaseException:
            _unlink(tmp)
            raise

    def _touch(self, digest: str) -> None:
        """Last use for the LRU order is the JSON's mtime."""
        try:
            os.utime(self.folder / f"{digest}.json")
        except OSError:
            pass

    def _discard(self, digest: str, why: str) -> None:
        log.warning("volume cache: entry %s discarded and its series read again: %s", digest, why)
        stats["discarded"] += 1
        self._remove(digest)

    def _remove(self, digest: str) -> None:
        # The JSON first: without it the entry is incomplete and never read.
        _unlink(self.folder / f"{digest}.json")
        _unlink(self.folder / f"{digest}.npy")


_lock = threading.Lock()
_pending: dict[str, Future] = {}  # digest -> its entry being finished by the writer thread
_executor: ThreadPoolExecutor | None = None


def _writer() -> ThreadPoolExecutor:
    """One thread finishes entries in the background (joined at interpreter exit)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radsight-volume-cache")
    return _executor


def _submit(digest: str, job) -> None:
    """Run `job` on the writer thread; readers of `digest` wait for it (`_wait_for`)."""
    def run() -> None:
        try:
            job()
        finally:
            with _lock:
                if _pending.get(digest) is future:
                    del _pending[digest]

    with _lock:
        future = _writer().submit(run)
        _pending[digest] = future


def _wait_for(digest: str) -> None:
    with _lock:
        future = _pending.get(digest)
    if future is not None:
        future.result()


def wait() -> None:
    """Block until every entry this process is writing is complete (tests, benchmarks)."""
    with _lock:
        futures = list(_pending.values())
    for future in futures:
        future.result()


def _dump(obj: dict) -> bytes:
    """JSON with a checksum of itself: a damaged or edited file that still parses is caught."""
    body = json.dumps(obj, sort_keys=True)
    return json.dumps({"sha256": hashlib.sha256(body.encode()).hexdigest(), "body": body}).encode()


def _parse(data: bytes) -> dict:
    """What `_dump` wrote; ValueError when the file is damaged or not ours."""
    outer = json.loads(data)
    if not isinstance(outer, dict) or not isinstance(outer.get("body"), str):
        raise ValueError("not a volume cache file")
    if hashlib.sha256(outer["body"].encode()).hexdigest() != outer.get("sha256"):
        raise ValueError("checksum mismatch")
    obj = json.loads(outer["body"])
    if not isinstance(obj, dict):
        raise ValueError("not a volume cache file")
    return obj


def _is_digest(value) -> bool:
    """A key as this module makes them (no path separators: an index never points elsewhere)."""
    return isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def _listed_stamp(snap: PathSnapshot, name: str) -> Stamp | None:
    """The stamp of file `name` in the snapshot; None for a file outside it (one that a
    DICOMDIR names elsewhere: a missing one could appear unseen, so such paths are scanned)."""
    if name == snap.path:
        return snap.listing.get(".")
    return snap.listing.get(os.path.relpath(name, snap.path))


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable (POSIX); Windows cannot open a folder for fsync."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
