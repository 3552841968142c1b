"""Load benchmark per transfer syntax: RadSight vs SimpleITK, same run, same files.

Every time is the median of `repeats` runs from the page cache (each folder is read once
first), so the comparison is about parsing and decoding, not the disk. Per syntax: a full read
by SimpleITK's ImageSeriesReader and by RadSight (scan + decode, volume cache off), the first
displayable slice from a folder never opened, a re-open from RadSight's volume cache, and peak
memory (numpy's allocations above the baseline, traced by tracemalloc) over the volume's bytes.
The data folder (cache, index) is a temporary one, so the user's own cache is left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from viewer.bench.series_maker import ENCODINGS, encode_series, encoder_available, write_bench_series
from viewer.bench.timing import median_seconds
from viewer.core.errors import RadSightError
from viewer.dicom import load, open_path, volume_cache
from viewer.dicom.pixels import FrameReader, output_dtype

# SimpleITK time over RadSight time, per kind of syntax; seconds for the others.
GOALS = {"uncompressed": 3.0, "compressed": 2.0, "first_slice_s": 0.3, "reopen_s": 0.1, "peak_memory_ratio": 1.5}
DEFAULT_SYNTAXES = tuple(ENCODINGS)


def _simpleitk(folder: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _first_slice(folder: Path) -> np.ndarray:
    """What the viewer shows first: the scan of the folder, then its middle slice decoded."""
    series, _ = open_path(folder)
    chosen = max(series, key=lambda s: len(s.records))
    plan = chosen.plan
    out = np.empty(plan.shape[1:], dtype=output_dtype(plan.records))
    FrameReader().read_into(plan.records[len(plan.records) // 2], out)
    return out


def _peak_bytes(fn: Callable[[], object]) -> tuple[int, object]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak, result


def _read_all(folder: Path) -> int:
    total = 0
    for f in (p for p in folder.iterdir() if p.is_file()):
        with open(f, "rb") as fp:
            total += len(fp.read())
    return total


@contextmanager
def _data_dir(path: Path):
    """Point the volume cache and index at a scratch folder for the benchmark's duration."""
    old = os.environ.get("RADSIGHT_DATA_DIR")
    os.environ["RADSIGHT_DATA_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("RADSIGHT_DATA_DIR", None)
        else:
            os.environ["RADSIGHT_DATA_DIR"] = old


def measure_folder(folder: Path, repeats: int, lossless: bool = True) -> dict:
    """Every figure of one row, on one series folder."""
    import SimpleITK as sitk

    disk_bytes = _read_all(folder)  # also warms the page cache
    itk = median_seconds(lambda: _simpleitk(folder), repeats)
    cold = median_seconds(lambda: load(folder, use_cache=False), repeats)
    first = median_seconds(lambda: _first_slice(folder), repeats)
    peak, volume = _peak_bytes(lambda: load(folder, use_cache=False))
    # The cache does not trust files written in the last RACY_SECONDS (their mtime may not show a
    # rewrite yet): a folder the benchmark has just written waits that long before it is cached.
    newest = max(f.stat().st_mtime for f in folder.iterdir())
    time.sleep(max(0.0, newest + volume_cache.RACY_SECONDS + 0.1 - time.time()))
    load(folder)  # fills the cache
    volume_cache.wait()
    reopen = median_seconds(lambda: load(folder), repeats)
    reference = sitk.GetArrayFromImage(_simpleitk(folder))  # a copy: a view dies with its image
    same = bool(reference.shape == volume.voxels.shape and np.array_equal(reference, volume.voxels))
    return {
        "slices": int(volume.voxels.shape[0]), "disk_mb": disk_bytes / 2**20, "volume_mb": volume.voxels.nbytes / 2**20,
        "simpleitk_s": itk, "radsight_s": cold, "ratio": itk / cold, "first_slice_s": first, "reopen_s": reopen,
        "peak_memory_ratio": peak / volume.voxels.nbytes, "identical_to_simpleitk": same, "lossless": lossless,
    }


def _goal(name: str) -> float:
    return GOALS["uncompressed"] if name.startswith("explicit-le") else GOALS["compressed"]


def _table(rows: dict[str, dict], title: str) -> str:
    lines = [title,
             f"  {'syntax':<26}{'MB':>6}{'SimpleITK s':>13}{'RadSight s':>12}{'ratio':>8}{'goal':>7}"
             f"{'first s':>9}{'re-open s':>11}{'peak x':>8}  identical"]
    for name, r in rows.items():
        if "skipped" in r:
            lines.append(f"  {name:<26}skipped: {r['skipped']}")
            continue
        goal = r.get("goal")
        lines.append(
            f"  {name:<26}{r['disk_mb']:>6.0f}{r['simpleitk_s']:>13.3f}{r['radsight_s']:>12.3f}{r['ratio']:>7.2f}x"
            f"{(f'>={goal:g}x' if goal else ''):>7}{r['first_slice_s']:>9.3f}{r['reopen_s']:>11.3f}"
            f"{r['peak_memory_ratio']:>7.2f}x  {'yes' if r['identical_to_simpleitk'] else 'NO'}")
    lines.append(f"  goals: first slice < {GOALS['first_slice_s']} s, re-open < {GOALS['reopen_s']} s, "
                 f"peak memory <= {GOALS['peak_memory_ratio']}x the volume; ratio = SimpleITK time / RadSight time")
    return "\n".join(lines)


def run_load_benchmark(slices: int = 300, repeats: int = 3, workdir: str | None = None,
                       syntaxes: tuple[str, ...] = DEFAULT_SYNTAXES, series: str | None = None,
                       log: Callable[[str], None] = print) -> dict:
    """Per-syntax rows on a CT this makes itself, or one row on the folder `series`."""
    own = workdir is None
    root = Path(workdir or tempfile.mkdtemp(prefix="radsight-bench-"))
    unknown = [s for s in syntaxes if s not in ENCODINGS]
    if unknown:
        raise RadSightError(f"unknown transfer syntax {unknown[0]!r}; choose from {', '.join(ENCODINGS)}")
    rows: dict[str, dict] = {}
    try:
        with _data_dir(root / "data"):
            if series is not None:
                folder = Path(series)
                if not folder.is_dir():
                    raise RadSightError(f"{folder} is not a folder")
                found = open_path(folder)[0]
                if len(found) != 1:
                    raise RadSightError(f"{folder} holds {len(found)} image series; name a folder with exactly one "
                                        "(SimpleITK reads one series per folder)")
                if any(r.path.parent != folder for r in found[0].records):
                    raise RadSightError(f"the series' files are in subfolders of {folder}; name the folder that "
                                        "holds them (SimpleITK reads one folder)")
                name = found[0].first.transfer_syntax
                log(f"measuring {folder} (median of {repeats} runs each) ...")
                rows[name] = measure_folder(folder, repeats)
                title = f"RadSight load benchmark: {folder}, median of {repeats}"
            else:
                for name in syntaxes:
                    encoding = ENCODINGS[name]
                    why_not = encoder_available(encoding)
                    if why_not:
                        rows[name] = {"skipped": why_not}
                        continue
                    folder = _prepare(root, name, slices, log)
                    log(f"measuring {name} (median of {repeats} runs each) ...")
                    rows[name] = measure_folder(folder, repeats) | {"goal": _goal(name)}
                title = f"RadSight load benchmark: 512x512x{slices} CT per transfer syntax, median of {repeats}"
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return {"slices": slices, "repeats": repeats, "rows": rows, "goals": GOALS, "text": _table(rows, title)}


def _prepare(root: Path, name: str, slices: int, log: Callable[[str], None]) -> Path:
    """The folder of `name`, written once per work folder (re-used with --workdir)."""
    folder = root / name
    if folder.is_dir() and len(list(folder.iterdir())) == slices:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    if name == "explicit-le-small-header":
        log(f"writing a 512x512x{slices} CT with minimal headers ...")
        write_bench_series(folder, slices, vendor_header=False)
        return folder
    source = root / "explicit-le"
    if not (source.is_dir() and len(list(source.iterdir())) == slices):
        shutil.rmtree(source, ignore_errors=True)
        log(f"writing a 512x512x{slices} CT with vendor-sized headers ...")
        write_bench_series(source, slices)
    if name != "explicit-le":
        encode_series(source, folder, ENCODINGS[name], log)
    return folder
