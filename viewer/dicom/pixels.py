"""Decode one frame into modality values (HU for CT) using that frame's own rescale.

Uncompressed little-endian frames are read with one `readinto` at the offset found during the
scan, straight into the output volume when no conversion is needed: pydicom's `pixel_array`
would first build the whole dataset and a second copy of the pixels. Everything else (JPEG
family, JPEG-LS, JPEG 2000, HTJ2K, RLE) is decoded one frame at a time from the fragment
bytes at the offset the scan recorded, by the fastest decoder measured per syntax
(viewer.dicom.decoders); what that table does not cover (colour, deflate, big-endian) goes
through pydicom's pixel decoders (pylibjpeg / gdcm plugins). `read_into` may be called from
several threads at once for different frames.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
import pydicom

from pydicom.encaps import generate_frames
from pydicom.pixels import get_decoder, pixel_array

from viewer.core.errors import DicomReadError
from viewer.dicom import decoders
from viewer.dicom.header import SliceRecord, transfer_syntax_name


# Retired JPEG processes (spectral selection, progressive, hierarchical; PS3.5 Annex A.4.1):
# pydicom registers no decoder for them, but libjpeg (pylibjpeg-libjpeg) implements all of
# ISO 10918-1, so their frames are handed to it directly.
RETIRED_JPEG_SYNTAXES = {f"1.2.840.10008.1.2.4.{n}" for n in (52, 53, 54, 55, 56, 58, 59, 60, 61, 62, 63, 64, 65, 66)}


def libjpeg_available() -> bool:
    try:
        import libjpeg  # noqa: F401
    except ImportError:
        return False
    return True


def output_dtype(records: list[SliceRecord] | tuple[SliceRecord, ...]) -> np.dtype:
    """The smallest dtype that holds every frame's rescaled values exactly.

    CT is kept in int16 even when a 16-bit signed storage range plus the intercept could
    underflow it: values below -32768 HU are padding, not tissue, and halving the memory of
    every CT volume matters more; they saturate at -32768.
    """
    lo = hi = None
    for r in records:
        if r.rescale_slope != 1.0 or not float(r.rescale_intercept).is_integer() or r.samples_per_pixel != 1:
            return np.dtype(np.float32)
        bits = min(r.bits_stored, r.bits_allocated)
        rmin, rmax = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if r.pixel_representation
                      else (0, (1 << bits) - 1))
        rmin += int(r.rescale_intercept)
        rmax += int(r.rescale_intercept)
        lo = rmin if lo is None else min(lo, rmin)
        hi = rmax if hi is None else max(hi, rmax)
    if records[0].modality == "CT" and lo >= -(1 << 16) and hi <= (1 << 15) - 1 + (1 << 12):
        return np.dtype(np.int16)
    for dtype in (np.int16, np.uint16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.float32)


def _mask_stored_bits(raw: np.ndarray, r: SliceRecord) -> np.ndarray:
    """Apply (0028,0101) Bits Stored: clear unused high bits, sign-extend signed values."""
    if r.bits_stored >= r.bits_allocated:
        return raw
    if r.pixel_representation:
        shift = r.bits_allocated - r.bits_stored
        np.left_shift(raw, shift, out=raw)
        np.right_shift(raw, shift, out=raw)
        return raw
    np.bitwise_and(raw, raw.dtype.type((1 << r.bits_stored) - 1), out=raw)
    return raw


class FrameReader:
    """Reads frames of one series; caches split or decoded multi-frame files for one load.

    Thread-safe: scratch buffers are per thread, and each multi-frame file is decoded or split
    by one thread while the others needing it wait.
    """

    def __init__(self) -> None:
        self._decoded: dict[Path, np.ndarray] = {}
        self._lock = threading.Lock()
        self._file_locks: dict[Path, threading.Lock] = {}
        self._local = threading.local()
        self._fragments = decoders.FragmentSource()

    def read_into(self, r: SliceRecord, out: np.ndarray) -> None:
        """Write frame `r` as modality values into the 2-D array `out` (rows x cols)."""
        if r.is_native_fast:
            self._read_native(r, out)
        elif decoders.handles(r):
            self._rescale(self._decode_fragment(r), r, out)
        else:
            raw = self._decode(r)
            self._rescale(raw, r, out)

    def _decode_fragment(self, r: SliceRecord) -> np.ndarray:
        try:
            src = self._fragments.frame(r)
        except DicomReadError:
            raise
        except Exception as exc:  # pydicom.encaps raises ValueError and struct errors on damaged items
            raise DicomReadError(r.path, (
                f"encapsulated pixel data of {transfer_syntax_name(r.transfer_syntax)} cannot be split "
                f"into frames: {type(exc).__name__}: {exc}")) from None
        return decoders.decode_frame(src, r)

    def _read_native(self, r: SliceRecord, out: np.ndarray) -> None:
        dtype = r.native_dtype()
        direct = (out.dtype == dtype and r.rescale_slope == 1.0 and r.rescale_intercept == 0.0
                  and r.bits_stored >= r.bits_allocated and out.flags.c_contiguous)
        in_place = (not direct and out.dtype == np.int16 and dtype.itemsize == 2 and r.rescale_slope == 1.0
                    and _fits_int16(r) and out.flags.c_contiguous)
        if direct:
            target = out
        elif in_place:
            target = out.view(dtype)  # read the stored values where the HU will be: one memory pass
        else:
            target = getattr(self._local, "buffer", None)
            if target is None or target.dtype != dtype or target.shape != out.shape:
                target = self._local.buffer = np.empty(out.shape, dtype=dtype)
        try:
            with open(r.path, "rb", buffering=0) as fp:
                fp.seek(r.pixel_offset)
                got = fp.readinto(memoryview(target).cast("B"))
        except OSError as exc:
            raise DicomReadError(r.path, f"cannot read pixel data: {exc.strerror or exc}") from None
        if got != target.nbytes:
            raise DicomReadError(r.path, f"file truncated: {got} of {target.nbytes} pixel bytes present")
        if in_place:
            _mask_stored_bits(target, r)
            np.add(out, np.int16(r.rescale_intercept), out=out)
        elif not direct:
            self._rescale(_mask_stored_bits(target, r), r, out)

    def _decode(self, r: SliceRecord) -> np.ndarray:
        if r.number_of_frames > 1 and r.path not in self._decoded:
            with self._lock:
                file_lock = self._file_locks.setdefault(r.path, threading.Lock())
            with file_lock:  # one thread decodes a multi-frame file; the others then read the cache
                return self._decode_cached(r)
        return self._decode_cached(r)

    def _decode_cached(self, r: SliceRecord) -> np.ndarray:
        arr = self._decoded.get(r.path)
        if arr is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(r.path, force=True)
                    arr = self._decode_retired_jpeg(ds) if r.transfer_syntax in RETIRED_JPEG_SYNTAXES else self._decode_standard(ds)
            except Exception as exc:  # decoders raise many types; the user needs the file and why
                raise DicomReadError(r.path, (
                    f"pixel data cannot be decoded ({transfer_syntax_name(r.transfer_syntax)}): "
                    f"{type(exc).__name__}: {exc}")) from None
            if r.number_of_frames > 1 and arr.ndim >= 3 and arr.shape[0] == r.number_of_frames:
                self._decoded[r.path] = arr
            elif r.number_of_frames > 1:
                arr = arr[np.newaxis]
        if r.frame is not None and r.number_of_frames > 1:
            arr = arr[r.frame]
        if arr.ndim == 3 and r.samples_per_pixel == 3:
            # Colour images (secondary captures) as luminance, ITU-R BT.601.
            arr = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        if arr.shape != (r.rows, r.cols):
            raise DicomReadError(r.path, f"decoded pixels have shape {arr.shape}, header says {r.rows} x {r.cols}")
        return arr

    @staticmethod
    def _decode_standard(ds) -> np.ndarray:
        """pydicom's decoders; pylibjpeg first for JPEG Extended, which GDCM refuses at 12 bits
        (and logs), but not for lossless JPEG, where pylibjpeg-libjpeg gets 16-bit frames wrong."""
        ts = ds.file_meta.TransferSyntaxUID
        if ts == "1.2.840.10008.1.2.4.51" and "pylibjpeg" in getattr(get_decoder(ts), "available_plugins", ()):
            try:
                return pixel_array(ds, decoding_plugin="pylibjpeg")
            except Exception:
                pass  # fall through to every available plugin
        return ds.pixel_array

    @staticmethod
    def _decode_retired_jpeg(ds) -> np.ndarray:
        from libjpeg import decode

        n = int(ds.get("NumberOfFrames", 1) or 1)
        frames = [decode(f) for f in generate_frames(ds.PixelData, number_of_frames=n)]
        arr = np.stack(frames) if n > 1 else frames[0]
        if ds.get("PixelRepresentation", 0) == 1:
            arr = arr.astype(np.int16 if ds.BitsAllocated == 16 else np.int8, copy=False)
        return arr

    @staticmethod
    def _rescale(raw: np.ndarray, r: SliceRecord, out: np.ndarray) -> None:
        """Modality LUT by (0028,1053) Rescale Slope and (0028,1052) Rescale Intercept."""
        if not raw.dtype.isnative:  # Explicit VR Big Endian: the int16 view below would swap bytes
            raw = raw.astype(raw.dtype.newbyteorder("="))
        if out.dtype.kind == "f" or r.rescale_slope != 1.0:
            np.multiply(raw, np.float32(r.rescale_slope), out=out, casting="unsafe")
            out += np.float32(r.rescale_intercept) if out.dtype.kind == "f" else int(r.rescale_intercept)
            return
        intercept = int(r.rescale_intercept)
        if out.dtype == np.int16 and raw.dtype.itemsize == 2 and _fits_int16(r):
            # Stored values and their rescaled values all fit int16: one int16 pass, no temporaries.
            np.add(raw.view(np.int16), np.int16(intercept), out=out)
        elif out.dtype == np.int16 and raw.dtype.itemsize >= 2:
            # Saturate instead of wrapping (see output_dtype for why CT stays int16).
            wide = raw.astype(np.int32) + intercept
            np.clip(wide, -32768, 32767, out=wide)
            out[...] = wide
        else:
            np.add(raw, np.int32(intercept), out=out, casting="unsafe")


def _fits_int16(r: SliceRecord) -> bool:
    bits = min(r.bits_stored, r.bits_allocated)
    lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if r.pixel_representation else (0, (1 << bits) - 1))
    intercept = int(r.rescale_intercept)
    return hi <= 32767 and -32768 <= lo + intercept and hi + intercept <= 32767
