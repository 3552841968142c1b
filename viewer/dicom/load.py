"""Build `viewer.core.Volume` objects from scanned series, NIfTI/NRRD files, or a path.

`load(path, series_uid=None)` is the public entry point (DESIGN.md "Python API").
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from viewer.core.errors import DicomReadError, RadSightError, SeriesNotFoundError
from viewer.core.volume import DisplayHints, GeometryWarning, SourceIdentity, Volume
from viewer.dicom import decoders, volume_cache
from viewer.dicom.pixels import FrameReader, output_dtype
from viewer.dicom.scan import Progress, ScanResult, is_volume_file, scan
from viewer.dicom.series import Series, group_series
from viewer.dicom.volume_cache import SeriesKey, VolumeCache

HU_UNIT = "[hnsf'U]"  # UCUM code for Hounsfield units


def load_series(series: Series, progress: Progress | None = None,
                cancelled: Callable[[], bool] | None = None, use_cache: bool = True) -> Volume:
    """Every frame of `series` on its planned grid: from the volume cache when none of its
    files changed (volume_cache.py), else decoded. `use_cache=False` always decodes."""
    return _load_series(series, progress, cancelled, use_cache)[0]


def _load_series(series: Series, progress: Progress | None, cancelled: Callable[[], bool] | None,
                 use_cache: bool) -> tuple[Volume, SeriesKey | None]:
    """The volume and its cache key when it is in the cache now.

    A volume with undecodable frames left out is not cached: the frames are tried again next
    time and the user sees the warning again.
    """
    cache = VolumeCache.default() if use_cache else None
    key = cache.key_for(series) if cache is not None else None
    if key is not None:
        volume = cache.get(key)
        if volume is not None:
            if progress is not None:
                progress(len(series.plan.records), len(series.plan.records), f"reading {series.label}")
            return volume, key
        volume_cache.stats["miss"] += 1
    volume = _decode_series(series, progress, cancelled)
    if key is None or any(w.code == "undecodable_frames" for w in volume.warnings):
        return volume, None
    # A file rewritten while it was decoded must not be cached under its old stamp.
    if cache.key_for(series) != key or not cache.put(key, volume):
        return volume, None
    return volume, key


def _decode_series(series: Series, progress: Progress | None = None,
                   cancelled: Callable[[], bool] | None = None) -> Volume:
    """Read every frame of `series` onto its planned grid."""
    plan = series.plan
    records = plan.records
    dtype = output_dtype(records)
    reader = FrameReader()
    n = len(records)
    stack = np.empty((n, plan.shape[1], plan.shape[2]), dtype=dtype if plan.resample is None else np.float32)
    failed = _read_frames(records, stack, reader, series.label, progress, cancelled)
    if failed:
        return _load_without(series, failed, progress, cancelled)
    if plan.inplane_shift is not None:
        _shift_slices(stack, plan.inplane_shift, fill=float(stack.min()))
    if plan.resample is not None:
        lower, upper, weight = plan.resample
        w = weight.astype(np.float32)[:, None, None]
        resampled = stack[lower] * (1 - w) + stack[upper] * w
        stack = np.rint(resampled).astype(dtype) if dtype.kind in "iu" else resampled.astype(dtype)
    first = records[0]
    window = next((r.window for r in records if r.window), None)
    return Volume(
        voxels=stack,
        affine=plan.affine,
        frame_of_reference_uid=first.frame_of_reference_uid,
        source=SourceIdentity(first.study_uid or None, first.series_uid or None, first.modality or None,
                              first.series_number, first.series_description or None, str(first.path.parent)),
        warnings=tuple(series.all_warnings),
        display=DisplayHints(window[0] if window else None, window[1] if window else None,
                             invert_grey=first.photometric == "MONOCHROME1"),
        unit=HU_UNIT if first.modality == "CT" else "",
    )


def _decode_workers(records) -> int:
    """Threads when every frame goes to a decoder that releases the GIL (decoders.py measured
    which): a compressed slice takes milliseconds to decode, so each core helps. Otherwise one
    thread: native frames are a `readinto` bound by memory bandwidth (threads measured no faster
    on 2 cores); RLE's fastest decoder holds the GIL but takes 0.2-0.3 ms a frame, and a
    process pool (fork, 2 workers) measured 0.33 s only to hand 300 decoded 512x512 frames back,
    several times what decoding them here costs; what is left (deflate, colour, big-endian,
    retired JPEG) goes through pydicom, is rare, and holds the GIL."""
    if len(records) < 4 or not all(decoders.handles(r) for r in records):
        return 1
    if not all(decoders.releases_gil(ts) for ts in {r.transfer_syntax for r in records}):
        return 1
    return max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1), 8))


def _read_frames(records, stack: np.ndarray, reader: FrameReader, label: str, progress: Progress | None,
                 cancelled: Callable[[], bool] | None) -> list[DicomReadError]:
    """Read every frame into `stack`; the frames that cannot be read are returned, not raised.

    In parallel, frames are submitted in slice order and collected in that order, so progress
    (and a first-slice preview) still advances from the first slice; a cancel drops the frames
    not yet started.
    """
    n = len(records)
    failed: list[DicomReadError] = []

    def read_one(k: int) -> DicomReadError | None:
        try:
            reader.read_into(records[k], stack[k])
        except DicomReadError as exc:
            return exc
        return None

    workers = _decode_workers(records)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="radsight-decode") if workers > 1 else None
    window = workers * 4  # frames submitted ahead: a cancel stops within a few frames
    pending: deque = deque()
    next_k = 0
    try:
        for k in range(n):
            if cancelled is not None and cancelled():
                raise RadSightError(f"loading {label} was cancelled")
            if pool is None:
                error = read_one(k)
            else:
                while next_k < n and len(pending) < window:
                    pending.append(pool.submit(read_one, next_k))
                    next_k += 1
                error = pending.popleft().result()
            if error is not None:
                failed.append(error)
            if progress is not None and (k % 32 == 0 or k == n - 1):
                progress(k + 1, n, f"reading {label}")
    finally:
        if pool is not None:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
    return failed


def _load_without(series: Series, failed: list[DicomReadError], progress, cancelled) -> Volume:
    """Load the frames that decode; the geometry check then reports (and fills) the gaps."""
    bad = {exc.path for exc in failed}
    good = [r for r in series.records if r.path not in bad]
    if not good:
        raise failed[0]
    names = ", ".join(f"{exc.path.name} ({exc.reason})" for exc in failed[:3])
    note = GeometryWarning("undecodable_frames", (
        f"{series.label}: {len(failed)} frame(s) could not be decoded and were left out: {names}"
        f"{', ...' if len(failed) > 3 else ''}"))
    return load_series(Series(series.key, good, series.warnings + [note]), progress, cancelled)


def _shift_slices(stack: np.ndarray, shifts: np.ndarray, fill: float) -> None:
    """Shift each slice in-plane by (di, dj) voxels with linear interpolation (SimpleITK)."""
    import SimpleITK as sitk

    for k, (di, dj) in enumerate(shifts):
        if abs(di) < 1e-6 and abs(dj) < 1e-6:
            continue
        image = sitk.GetImageFromArray(stack[k].astype(np.float32))
        # Output pixel x samples input x - shift: the frame moves by +shift.
        transform = sitk.TranslationTransform(2, (-float(di), -float(dj)))
        moved = sitk.Resample(image, image, transform, sitk.sitkLinear, fill)
        stack[k] = np.rint(sitk.GetArrayViewFromImage(moved)) if stack.dtype.kind in "iu" else sitk.GetArrayViewFromImage(moved)


def load_volume_file(path: Path) -> Volume:
    """NIfTI / NRRD / MetaImage through SimpleITK, whose physical space is LPS like DICOM's."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DicomReadError(path, f"cannot be read as a NIfTI/NRRD/MetaImage volume: {str(exc).strip().splitlines()[-1]}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DicomReadError(path, f"is a {image.GetDimension()}-D image with {image.GetNumberOfComponentsPerPixel()} "
                             "components; RadSight loads 3-D scalar volumes")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * np.array(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return Volume(sitk.GetArrayFromImage(image), affine, None, SourceIdentity(path=str(path)))


def open_path(path: Path | str, progress: Progress | None = None,
              cancelled: Callable[[], bool] | None = None) -> tuple[list[Series], ScanResult]:
    """Scan a path and group what it holds into series."""
    result = scan(path, progress=progress, cancelled=cancelled)
    return group_series(result.records), result


def load(path: Path | str, series_uid: str | None = None, progress: Progress | None = None,
         cancelled: Callable[[], bool] | None = None, use_cache: bool = True) -> Volume:
    """The volume of one series at `path` (a folder, a file, a DICOMDIR or a NIfTI/NRRD file).

    With several series and no `series_uid`, the one with most frames is loaded and a warning
    names the others' count. `series_uid` may be a split part's key (`<uid>#<n>`).
    When no file under `path` changed since the last load, the cached volume is returned
    without reading any header (volume_cache.py); `use_cache=False` reads everything.
    """
    path = Path(path)
    if path.is_file() and is_volume_file(path):
        return load_volume_file(path)
    cache = VolumeCache.default() if use_cache else None
    snap = cache.snapshot(path, series_uid) if cache is not None else None
    if snap is not None and (volume := cache.reopen(snap)) is not None:
        if progress is not None:
            progress(1, 1, "opened from the volume cache")
        return volume
    series_list, result = open_path(path, progress, cancelled)
    if not series_list:
        if result.volume_files:
            return load_volume_file(result.volume_files[0])
        reasons = "; ".join(f"{p.path.name}: {p.reason}" for p in result.problems[:3])
        raise SeriesNotFoundError(f"no loadable image series in {path} ({result.files_seen} files; "
                                  f"{len(result.problems)} unreadable{': ' + reasons if reasons else ''})")
    if series_uid is not None:
        matches = [s for s in series_list if s.key == series_uid]
        if not matches:
            matches = [s for s in series_list if s.first.series_uid == series_uid]
        if not matches:
            raise SeriesNotFoundError(f"series {series_uid} is not in {path}; found: "
                                      + ", ".join(s.key for s in series_list))
        candidates = matches
    else:
        candidates = series_list
    chosen = max(candidates, key=lambda s: len(s.records))
    volume, key = _load_series(chosen, progress, cancelled, use_cache)
    plain = volume.warnings
    if len(candidates) > 1:
        note = GeometryWarning("several_series", (
            f"{path} holds {len(candidates)} series; loaded the largest ({chosen.key}, "
            f"{len(chosen.records)} frames); pass series_uid to choose another"))
        volume = Volume(volume.voxels, volume.affine, volume.frame_of_reference_uid, volume.source,
                        volume.warnings + (note,), volume.display, volume.unit)
    if snap is not None and key is not None:
        cache.remember(snap, key, volume.warnings[len(plain):])
    return volume
