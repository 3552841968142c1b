"""Load benchmark: a 512x512xN CT read by RadSight, by SimpleITK, and as raw bytes, same run.

Every figure is the median of `repeats` runs from the page cache (the files are read once
first), so the comparison is about parsing and decoding, not the disk. Peak memory is numpy's
allocations above the baseline, traced by tracemalloc (numpy reports its buffers to it).
"""

from __future__ import annotations

import shutil
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from viewer.bench.timing import median_seconds
from viewer.dicom import load_series, open_path
from viewer.dicom.pixels import FrameReader
from viewer.store import Store

GOALS = {"vs_simpleitk": 3.0, "vs_raw_read": 1.5, "first_slice_s": 0.3, "peak_memory_ratio": 1.5}


def write_bench_series(folder: Path, slices: int, rows: int = 512, cols: int = 512) -> None:
    """Synthetic CT with a vendor-sized header (~150 elements with a private block, like real
    scanners'), so that header parsing costs what it costs on real data."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:rows, :cols]
    body = ((yy - rows / 2) / (rows * 0.4)) ** 2 + ((xx - cols / 2) / (cols * 0.45)) ** 2 < 1
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20250115"
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "120000"
        ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "RadSight", "Benchmark"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "SYNTHETIC^BENCH", "RS-BENCH", "", "O"
        ds.StudyDescription = ds.SeriesDescription = "SYNTHETIC BENCHMARK"
        ds.SliceThickness, ds.KVP, ds.SpacingBetweenSlices = "1.0", "120", "1.0"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.AcquisitionNumber, ds.InstanceNumber = 2, 1, k + 1
        ds.ImagePositionPatient = [-180.0, -180.0, -150.0 + k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = -150.0 + k
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns, ds.PixelSpacing = rows, cols, [0.703125, 0.703125]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.WindowCenter, ds.WindowWidth = "-600", "1500"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        block = ds.private_block(0x0019, "RADSIGHT_BENCH", create=True)
        for e in range(0x10, 0x10 + 110):
            block.add_new(e, ("DS", "SS", "LO", "SL")[e % 4],
                          ("1.234567", e, "vendor value", e * 1000)[e % 4])
        pixels = np.where(body, 1024 + 40, 24).astype(np.uint16)
        pixels += rng.integers(0, 30, size=(rows, cols), dtype=np.uint16)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"{rng.integers(1 << 40):012x}.dcm", enforce_file_format=True)


def _raw_read(files: list[Path]) -> None:
    for f in files:
        with open(f, "rb") as fp:
            fp.read()


def _raw_read_into_new_buffer(files: list[Path]) -> np.ndarray:
    """The same bytes into one freshly allocated buffer: what any loader pays at least, since a
    new volume's pages must be faulted in (plain reads reuse the allocator's freed memory)."""
    sizes = [f.stat().st_size for f in files]
    buffer = np.empty(sum(sizes), dtype=np.uint8)
    view, offset = memoryview(buffer), 0
    for f, size in zip(files, sizes):
        with open(f, "rb", buffering=0) as fp:
            fp.readinto(view[offset:offset + size])
        offset += size
    return buffer


def _simpleitk(folder: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _radsight_cold(folder: Path):
    series, _ = open_path(folder)
    return load_series(series[0])


def _first_slice_cold(folder: Path) -> np.ndarray:
    series, _ = open_path(folder)
    plan = series[0].plan
    out = np.empty(plan.shape[1:], dtype=np.int16)
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


def run_load_benchmark(slices: int = 300, repeats: int = 3, workdir: str | None = None,
                       log: Callable[[str], None] = print) -> dict:
    own = workdir is None
    root = Path(workdir or tempfile.mkdtemp(prefix="radsight-bench-"))
    folder = root / "ct"
    try:
        if not folder.is_dir() or len(list(folder.iterdir())) != slices:
            shutil.rmtree(folder, ignore_errors=True)
            log(f"writing a synthetic 512x512x{slices} CT series to {folder} ...")
            write_bench_series(folder, slices)
        files = sorted(folder.iterdir())
        _raw_read(files)  # page cache
        log("measuring (median of %d runs each) ..." % repeats)
        raw = median_seconds(lambda: _raw_read(files), repeats)
        raw_new = median_seconds(lambda: _raw_read_into_new_buffer(files), repeats)
        itk = median_seconds(lambda: _simpleitk(folder), repeats)
        cold = median_seconds(lambda: _radsight_cold(folder), repeats)
        first_cold = median_seconds(lambda: _first_slice_cold(folder), repeats)
        with Store(root / "bench-index.sqlite3") as store:
            series, result = open_path(folder)
            store.import_scan(series, result)
            key = series[0].key
            indexed = median_seconds(lambda: load_series(store.indexed_series(key)), repeats)
            def first_indexed():
                s = store.indexed_series(key)
                out = np.empty(s.plan.shape[1:], dtype=np.int16)
                FrameReader().read_into(s.plan.records[len(s.plan.records) // 2], out)
            first_warm = median_seconds(first_indexed, repeats)
        peak, volume = _peak_bytes(lambda: _radsight_cold(folder))
        reference = _simpleitk(folder)
        import SimpleITK as sitk

        same = bool(np.array_equal(sitk.GetArrayViewFromImage(reference), volume.voxels))
        volume_bytes = volume.voxels.nbytes
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    report = {
        "slices": slices, "repeats": repeats, "volume_mb": volume_bytes / 2**20, "identical_to_simpleitk": same,
        "seconds": {"raw_read": raw, "raw_read_new_buffer": raw_new, "simpleitk": itk, "radsight_cold": cold, "radsight_indexed": indexed,
                    "first_slice_cold": first_cold, "first_slice_indexed": first_warm},
        "ratios": {"simpleitk_over_radsight_cold": itk / cold, "simpleitk_over_radsight_indexed": itk / indexed,
                   "radsight_cold_over_raw_read": cold / raw, "radsight_indexed_over_raw_read": indexed / raw,
                   "radsight_indexed_over_raw_read_new_buffer": indexed / raw_new,
                   "peak_memory_over_volume": peak / volume_bytes},
        "goals": GOALS,
    }
    s, r = report["seconds"], report["ratios"]
    report["text"] = "\n".join([
        f"RadSight load benchmark: 512x512x{slices} CT, {volume_bytes / 2**20:.0f} MB as int16, median of {repeats}",
        f"  raw file reads            {s['raw_read']:.3f} s (into a new buffer: {s['raw_read_new_buffer']:.3f} s)",
        f"  SimpleITK series reader   {s['simpleitk']:.3f} s",
        f"  RadSight (scan + load)    {s['radsight_cold']:.3f} s   SimpleITK/RadSight {r['simpleitk_over_radsight_cold']:.2f}x"
        f" (goal >= {GOALS['vs_simpleitk']}x), vs raw read {r['radsight_cold_over_raw_read']:.2f}x (goal <= {GOALS['vs_raw_read']}x)",
        f"  RadSight (from index)     {s['radsight_indexed']:.3f} s   SimpleITK/RadSight {r['simpleitk_over_radsight_indexed']:.2f}x,"
        f" vs raw read {r['radsight_indexed_over_raw_read']:.2f}x (vs into a new buffer {r['radsight_indexed_over_raw_read_new_buffer']:.2f}x)",
        f"  first slice: cold {s['first_slice_cold']:.3f} s, from index {s['first_slice_indexed']:.3f} s (goal < {GOALS['first_slice_s']} s)",
        f"  peak memory above baseline: {r['peak_memory_over_volume']:.2f}x the volume (goal <= {GOALS['peak_memory_ratio']}x)",
        f"  voxels identical to SimpleITK: {same}",
    ])
    return report
