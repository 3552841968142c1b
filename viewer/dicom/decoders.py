"""The fastest well-kept decoder per compressed transfer syntax, for one frame at a time.

Chosen by measurement (`radsight bench decoders`, one run on the shared 2-core
machine while other jobs ran): one real 512x512 16-bit signed CT frame (COVID-19 RICORD scan)
re-encoded per syntax, median ms per frame. "2 thr" is 2-thread throughput over 1 thread
(noisy: the cores were shared); GIL says whether calls leave the GIL free, from a probe
thread's progress during 2048x2048 decodes (held: probe stalls, share <= 0.4; released >= 0.5).

    syntax                   decoder (first = chosen)          ms   2 thr  GIL released
    JPEG 2000 lossless .90   imagecodecs.jpeg2k (OpenJPEG)   24.2   1.89   yes
                             pylibjpeg-openjpeg               23.8   0.97   no
                             gdcm / pillow (via pydicom)      28.2 / 25.8   no
    JPEG 2000 lossy .91      imagecodecs.jpeg2k                8.6          yes
                             pylibjpeg-openjpeg / gdcm         8.9 / 8.5    no
    HTJ2K .201 / .202 / .203 imagecodecs.htj2k (OpenJPH)      1.0   1.75   yes
                             imagecodecs.jpeg2k (OpenJPEG)     2.0          yes
                             pylibjpeg-openjpeg                2.1   0.97   no
    JPEG-LS .80 / .81        imagecodecs.jpegls (CharLS)       3.5          yes
                             pyjpegls (CharLS) / gdcm          3.6 / 5.9    no
                             pylibjpeg-libjpeg                15.7          no
    JPEG lossless .57 / .70  imagecodecs.jpeg8 (libjpeg-turbo) 1.2-1.4      yes
                             imagecodecs.ljpeg / jpegsof3      2.0 / 3.2    yes
                             gdcm (pydicom's default)          4.2-5.2      no
                             pylibjpeg-libjpeg                 7.0  WRONG pixels (max 6095 off)
                                                                    on 16-bit lossless frames
    JPEG baseline .50        imagecodecs.jpeg8                 0.26         yes
                             pillow / gdcm / libjpeg           0.4 / 1.0 / 1.7
    JPEG extended 12-bit .51 imagecodecs.jpeg8                 1.0          yes
                             pylibjpeg-libjpeg                 3.9  (gdcm, pillow refuse it)
    RLE .5                   imagecodecs.dicomrle              0.29         unclear (0.39)
                             pylibjpeg-rle / pydicom numpy     0.27 / 2.5
    Deflate .1.2.1.99        pydicom (zlib, whole dataset)     2.0 per file, not a frame codec

Whole-file `dcmread` + `pixel_array` (the path before this table) cost 0.6-8 ms per frame on
top of the decode; the frame's bytes are now read from the offset the scan recorded. Lossless
results are identical to pydicom's default; lossy ones differ by at most 1 grey level
(IDCT / irreversible-wavelet rounding of another library).

The first available candidate of each syntax decodes; when it is missing or fails, the next
one tries. FrameReader uses pydicom's own decoders for what this table does not cover
(colour, deflate, big-endian, retired JPEG, files without a recorded fragment offset).
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from pydicom.encaps import generate_frames
from pydicom.pixels.utils import _get_jpg_parameters, get_j2k_parameters

from viewer.core.errors import DicomReadError
from viewer.dicom.header import SliceRecord, transfer_syntax_name

J2K = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
HTJ2K = ("1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
JPEG_LS = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
JPEG_LOSSLESS = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")
JPEG_LOSSY = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
RLE = "1.2.840.10008.1.2.5"


@dataclass(frozen=True)
class FrameDecoder:
    """One library's decode of one frame's bytes; `releases_gil` as measured (see table)."""

    name: str
    module: str  # import name: the decoder is available when it imports
    decode: Callable[[bytes, SliceRecord], np.ndarray]
    releases_gil: bool

    def available(self) -> bool:
        return _importable(self.module)


_IMPORTABLE: dict[str, bool] = {}


def _importable(module: str) -> bool:
    if module not in _IMPORTABLE:
        try:
            importlib.import_module(module)
            _IMPORTABLE[module] = True
        except ImportError:
            _IMPORTABLE[module] = False
    return _IMPORTABLE[module]


def _imagecodecs(function: str) -> Callable[[bytes, SliceRecord], np.ndarray]:
    def decode(src: bytes, r: SliceRecord) -> np.ndarray:
        import imagecodecs

        return getattr(imagecodecs, function)(src)
    return decode


def _imagecodecs_rle(src: bytes, r: SliceRecord) -> np.ndarray:
    import imagecodecs

    dtype = r.native_dtype()
    return np.frombuffer(imagecodecs.dicomrle_decode(src, dtype.newbyteorder("<").str), dtype=dtype)


def _openjpeg(src: bytes, r: SliceRecord) -> np.ndarray:
    import openjpeg

    return openjpeg.decode(src)


def _libjpeg(src: bytes, r: SliceRecord) -> np.ndarray:
    import libjpeg

    return libjpeg.decode(src)


def _pyjpegls(src: bytes, r: SliceRecord) -> np.ndarray:
    import jpeg_ls

    buffer, info = jpeg_ls.decode_buffer(src)
    return np.frombuffer(buffer, dtype=np.uint8 if info["bits_per_sample"] <= 8 else np.uint16)


def _pylibjpeg_rle(src: bytes, r: SliceRecord) -> np.ndarray:
    from rle.utils import decode_pixel_data

    frame = decode_pixel_data(src, version=2, rows=r.rows, columns=r.cols, samples_per_pixel=1,
                              bits_allocated=r.bits_allocated)
    return np.frombuffer(frame, dtype=r.native_dtype())


IC_J2K = FrameDecoder("imagecodecs.jpeg2k (OpenJPEG)", "imagecodecs", _imagecodecs("jpeg2k_decode"), True)
IC_HTJ2K = FrameDecoder("imagecodecs.htj2k (OpenJPH)", "imagecodecs", _imagecodecs("htj2k_decode"), True)
IC_JPEGLS = FrameDecoder("imagecodecs.jpegls (CharLS)", "imagecodecs", _imagecodecs("jpegls_decode"), True)
IC_LJPEG = FrameDecoder("imagecodecs.ljpeg (liblj92)", "imagecodecs", _imagecodecs("ljpeg_decode"), True)
IC_SOF3 = FrameDecoder("imagecodecs.jpegsof3", "imagecodecs", _imagecodecs("jpegsof3_decode"), True)
IC_JPEG8 = FrameDecoder("imagecodecs.jpeg8 (libjpeg-turbo)", "imagecodecs", _imagecodecs("jpeg8_decode"), True)
IC_RLE = FrameDecoder("imagecodecs.dicomrle", "imagecodecs", _imagecodecs_rle, False)
OPENJPEG = FrameDecoder("pylibjpeg-openjpeg", "openjpeg", _openjpeg, False)
LIBJPEG = FrameDecoder("pylibjpeg-libjpeg", "libjpeg", _libjpeg, False)
PYJPEGLS = FrameDecoder("pyjpegls (CharLS)", "jpeg_ls", _pyjpegls, False)
PYLIBJPEG_RLE = FrameDecoder("pylibjpeg-rle", "rle", _pylibjpeg_rle, False)

# Every candidate per syntax, fastest first (the measured order; the bench times them all).
CANDIDATES: dict[str, tuple[FrameDecoder, ...]] = {
    **{ts: (IC_J2K, OPENJPEG) for ts in J2K},
    **{ts: (IC_HTJ2K, IC_J2K, OPENJPEG) for ts in HTJ2K},
    **{ts: (IC_JPEGLS, PYJPEGLS, LIBJPEG) for ts in JPEG_LS},
    # Not pylibjpeg-libjpeg: it decodes 16-bit lossless frames wrongly (see table).
    **{ts: (IC_JPEG8, IC_LJPEG, IC_SOF3) for ts in JPEG_LOSSLESS},
    **{ts: (IC_JPEG8, LIBJPEG) for ts in JPEG_LOSSY},
    RLE: (IC_RLE, PYLIBJPEG_RLE),
}


def decoders_for(transfer_syntax: str) -> list[FrameDecoder]:
    """The installed candidates for a syntax, preferred first (empty: pydicom decodes it)."""
    return [d for d in CANDIDATES.get(transfer_syntax, ()) if d.available()]


def releases_gil(transfer_syntax: str) -> bool:
    """Whether the chosen decoder of a syntax runs without the GIL, so threads scale with cores.

    False (pydicom's default decoders, pure-Python RLE, deflate) means frames decoded in threads
    take turns; the loader should use processes for such a series if it wants all cores.
    """
    chosen = decoders_for(transfer_syntax)
    return bool(chosen) and chosen[0].releases_gil


def handles(r: SliceRecord) -> bool:
    """Whether this module decodes the record's frames (grey frames with a recorded fragment offset)."""
    return (r.encapsulated_offset is not None and r.samples_per_pixel == 1
            and r.bits_allocated in (8, 16) and r.photometric in ("MONOCHROME1", "MONOCHROME2")
            and bool(decoders_for(r.transfer_syntax)))


def conform(arr: np.ndarray, src: bytes, r: SliceRecord) -> np.ndarray:
    """The decoded frame as pydicom's default decode gives it: header dtype, sign and unused bits.

    Mirrors pydicom.pixels.decoders.base (`_apply_sign_correction`, `_correct_unused_bits`) so the
    pixels are identical whichever library decoded them; tests hold the two to np.array_equal.
    """
    dtype = r.native_dtype()
    if arr.size != r.rows * r.cols:
        raise ValueError(f"decoded {arr.size} pixels, header says {r.rows} x {r.cols}")
    arr = arr.reshape(r.rows, r.cols)
    if arr.dtype.itemsize == dtype.itemsize:
        arr = arr.view(dtype)
        if not arr.flags.writeable:
            arr = arr.copy()
    else:
        arr = arr.astype(dtype)  # e.g. 8-bit precision in a 16-bit container
    bits = 8 * dtype.itemsize
    ts = r.transfer_syntax
    if ts in J2K or ts in HTJ2K:
        info = get_j2k_parameters(src)
        signed = info.get("is_signed", r.pixel_representation)
        shift = bits - info.get("precision", r.bits_stored)
        if not (shift and signed != r.pixel_representation):
            return arr
    elif ts in JPEG_LS:
        if not r.pixel_representation:
            return arr
        shift = bits - _get_jpg_parameters(src).get("precision", r.bits_stored)
    else:
        shift = r.bits_allocated - r.bits_stored if r.bits_allocated > r.bits_stored else 0
    if shift > 0:
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def decode_frame(src: bytes, r: SliceRecord) -> np.ndarray:
    """Decode one frame's bytes with the first candidate that succeeds.

    A decoder's failure of any kind (pylibjpeg-rle's pyo3 PanicException derives from
    BaseException) moves on to the next; when all fail, DicomReadError names the file, the
    syntax and every decoder's reason. KeyboardInterrupt and SystemExit pass through.
    """
    reasons = []
    for decoder in decoders_for(r.transfer_syntax):
        try:
            return conform(decoder.decode(src, r), src, r)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: B036 - pyo3 panics are BaseException
            reasons.append(f"{decoder.name}: {type(exc).__name__}: {exc}")
    raise DicomReadError(r.path, (
        f"pixel data cannot be decoded ({transfer_syntax_name(r.transfer_syntax)}): "
        + ("; ".join(reasons) or "no decoder installed")))


class FragmentSource:
    """Each frame's compressed bytes, read from the offset the scan recorded (no dcmread).

    A multi-frame file is read and split once and its frames kept for the load; a single-frame
    file is read when asked. Safe to use from several threads.
    """

    def __init__(self) -> None:
        self._frames: dict[Path, list[bytes]] = {}
        self._lock = threading.Lock()
        self._file_locks: dict[Path, threading.Lock] = {}

    def frame(self, r: SliceRecord) -> bytes:
        if r.number_of_frames <= 1:
            return next(generate_frames(self._read(r), number_of_frames=1))
        frames = self._frames.get(r.path)
        if frames is None:
            with self._lock:
                file_lock = self._file_locks.setdefault(r.path, threading.Lock())
            with file_lock:  # one thread splits a file while the others wait for it
                frames = self._frames.get(r.path)
                if frames is None:
                    frames = list(generate_frames(self._read(r), number_of_frames=r.number_of_frames))
                    self._frames[r.path] = frames
        index = r.frame or 0
        if index >= len(frames):
            raise DicomReadError(r.path, f"frame {index + 1} of {r.number_of_frames} is missing from the pixel data "
                                         f"({len(frames)} frames found)")
        return frames[index]

    @staticmethod
    def _read(r: SliceRecord) -> bytes:
        try:
            with open(r.path, "rb") as fp:
                fp.seek(r.encapsulated_offset)
                return fp.read()
        except OSError as exc:
            raise DicomReadError(r.path, f"cannot read pixel data: {exc.strerror or exc}") from None
