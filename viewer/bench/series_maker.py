"""Benchmark series: a CT written the way scanners write it, then re-encoded per transfer syntax.

The pixels have a body, two lungs, a spine and CT-like noise, so the lossless codecs compress
them about as much as real chest CT (2-3x), not the 10x+ of a flat phantom that would flatter
the decoders. Headers come in two sizes: vendor-sized (a private block of ~110 elements, as
real scanners write) and minimal, since the fast header reader's lead depends on it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage, ExplicitVRLittleEndian, HTJ2KLossless, JPEG2000Lossless, JPEGLosslessSV1,
    JPEGLSLossless, RLELossless, UID, generate_uid,
)


@dataclass(frozen=True)
class Encoding:
    name: str
    uid: UID


# The lossless syntaxes PACS store CT in; the explicit-LE pair differ in header size only.
ENCODINGS = {e.name: e for e in (
    Encoding("explicit-le", ExplicitVRLittleEndian),
    Encoding("explicit-le-small-header", ExplicitVRLittleEndian),
    Encoding("rle", RLELossless),
    Encoding("jpeg-ls", JPEGLSLossless),
    Encoding("jpeg2000", JPEG2000Lossless),
    Encoding("jpeg-lossless", JPEGLosslessSV1),
    Encoding("htj2k", HTJ2KLossless),
)}


def chest_slice(k: int, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Stored values (HU + 1024) of one axial slice; lung size varies with k like a real scan."""
    yy, xx = np.mgrid[:rows, :cols].astype(np.float32)
    cy, cx = rows / 2, cols / 2
    body = ((yy - cy) / (rows * 0.36)) ** 2 + ((xx - cx) / (cols * 0.45)) ** 2 < 1
    lung_r = 0.6 + 0.3 * np.sin(np.pi * (k % 300) / 300)
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lungs |= ((yy - cy * 0.95) / (rows * 0.25 * lung_r)) ** 2 + ((xx - cx - side * cols * 0.2) / (cols * 0.13)) ** 2 < 1
    spine = (yy - rows * 0.75) ** 2 + (xx - cx) ** 2 < (rows * 0.05) ** 2
    hu = np.full((rows, cols), -1000.0, dtype=np.float32)
    hu[body] = 40.0
    hu[lungs & body] = -850.0
    hu[spine] = 700.0
    noise = rng.normal(0.0, 12.0, size=(rows, cols)).astype(np.float32)
    hu += np.where(body, noise, noise * 0.3)
    return np.clip(np.rint(hu + 1024), 0, 4095).astype(np.uint16)


def write_bench_series(folder: Path, slices: int, rows: int = 512, cols: int = 512,
                       vendor_header: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID = "SYNTHETIC^BENCH", "RS-BENCH"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 2, k + 1
        ds.ImagePositionPatient = [-180.0, -180.0, -150.0 + k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns, ds.PixelSpacing = rows, cols, [0.703125, 0.703125]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
        if vendor_header:
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20250115"
            ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "120000"
            ds.Manufacturer, ds.ManufacturerModelName = "RadSight", "Benchmark"
            ds.PatientBirthDate, ds.PatientSex = "", "O"
            ds.StudyDescription = ds.SeriesDescription = "SYNTHETIC BENCHMARK"
            ds.SliceThickness, ds.KVP, ds.SpacingBetweenSlices = "1.0", "120", "1.0"
            ds.PatientPosition = "HFS"
            ds.AcquisitionNumber = 1
            ds.SliceLocation = -150.0 + k
            ds.WindowCenter, ds.WindowWidth = "-600", "1500"
            ds.RescaleType = "HU"
            block = ds.private_block(0x0019, "RADSIGHT_BENCH", create=True)
            for e in range(0x10, 0x10 + 110):
                block.add_new(e, ("DS", "SS", "LO", "SL")[e % 4],
                              ("1.234567", e, "vendor value", e * 1000)[e % 4])
        ds.PixelData = chest_slice(k, rows, cols, rng).tobytes()
        ds.save_as(folder / f"{rng.integers(1 << 40):012x}.dcm", enforce_file_format=True)


def _imagecodecs_frame(arr: np.ndarray, ts: str) -> bytes:
    import imagecodecs

    if ts in ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"):
        # OpenJPH writes RPCL progression by default; .202 also asks for TLM markers.
        return imagecodecs.htj2k_encode(arr, reversible=True, tlm=ts.endswith("202"))
    if ts == "1.2.840.10008.1.2.4.203":
        return imagecodecs.htj2k_encode(arr, level=0.0001, reversible=False)  # ~2:1, max error ~13
    if ts in ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"):
        unsigned = arr.view(np.uint16) if arr.dtype == np.int16 else arr
        # Not predictors 5-7: libjpeg-turbo writes 16-bit frames with them that every decoder
        # (itself, liblj92, jpegsof3, GDCM) reads back differently from what was encoded.
        return imagecodecs.jpeg8_encode(unsigned, lossless=True, predictor=1 if ts.endswith("70") else 4)
    if ts == "1.2.840.10008.1.2.4.51":
        return imagecodecs.jpeg8_encode(arr, level=90, bitspersample=12)
    if ts == "1.2.840.10008.1.2.4.50":
        return imagecodecs.jpeg8_encode(arr, level=90)
    raise ValueError(f"no imagecodecs encoder chosen for {ts}")


def encode_dataset(ds: Dataset, ts: str) -> Dataset:
    """`ds` (native, one frame) re-encoded as `ts`, in place; lossy 8/12-bit JPEG rescale to fit.

    pydicom's encoders where it has one; imagecodecs for JPEG lossless/lossy and HTJ2K, which
    pydicom cannot write.
    """
    ts = UID(ts)
    arr = ds.pixel_array
    if ts == "1.2.840.10008.1.2.4.50" or ts == "1.2.840.10008.1.2.4.51":
        bits = 8 if ts.endswith("50") else 12
        slope = 16 if bits == 8 else 1
        hu = arr.astype(np.float64) * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        arr = np.clip(np.rint((hu + 1024) / slope), 0, (1 << bits) - 1).astype(np.uint8 if bits == 8 else np.uint16)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = arr.itemsize * 8, bits, bits - 1, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, -1024
        ds.PixelData = arr.tobytes()
    if ts == "1.2.840.10008.1.2.1.99":
        ds.file_meta.TransferSyntaxUID = ts
        return ds
    plugin = {"1.2.840.10008.1.2.4.90": ("pylibjpeg", {}), "1.2.840.10008.1.2.4.91": ("pylibjpeg", {"j2k_cr": [10]}),
              "1.2.840.10008.1.2.4.80": ("pyjpegls", {}), "1.2.840.10008.1.2.4.81": ("pyjpegls", {"jls_error": 2}),
              "1.2.840.10008.1.2.5": ("", {})}.get(ts)
    if plugin is not None:
        ds.compress(ts, encoding_plugin=plugin[0], **plugin[1])
        return ds
    ds.PixelData = encapsulate([_imagecodecs_frame(arr, ts)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = ts
    ds.LossyImageCompression = "01" if ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51",
                                             "1.2.840.10008.1.2.4.203") else "00"
    return ds


def _encode_file(source: Path, target: Path, ts: str) -> None:
    encode_dataset(pydicom.dcmread(source), ts).save_as(target, enforce_file_format=True)


def encode_series(source: Path, target: Path, encoding: Encoding,
                  log: Callable[[str], None] = lambda _m: None) -> None:
    """Re-encode every file of `source` into `target` (same names, same header)."""
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in source.iterdir() if p.is_file())
    log(f"encoding {len(files)} files as {encoding.uid.name} ...")
    # Processes, not threads: pylibjpeg-openjpeg's encoder crashed the process (SIGSEGV) when two
    # threads encoded at once.
    with ProcessPoolExecutor() as pool:
        list(pool.map(_encode_file, files, [target / f.name for f in files], repeat(str(encoding.uid)), chunksize=8))


def encoder_available(encoding: Encoding) -> str | None:
    """None when this machine can write `encoding`, else why not."""
    if encoding.uid == ExplicitVRLittleEndian:
        return None
    if encoding.uid in (JPEGLosslessSV1, HTJ2KLossless):
        try:
            import imagecodecs  # noqa: F401
        except ImportError:
            return "imagecodecs is not installed"
        return None
    from pydicom.pixels import get_encoder

    try:
        plugins = get_encoder(encoding.uid).available_plugins
    except Exception as exc:  # pydicom raises NotImplementedError for syntaxes it cannot encode
        return str(exc)
    return None if plugins else f"no pydicom encoder plugin for {encoding.uid.name}"
