"""A narrow, fast reader of the top-level header values a `SliceRecord` needs.

Why by hand: opening a folder is what users wait for, and pydicom builds a full Dataset
(~1.5-2 ms for a scanner's header with its private blocks) when a record needs ~35 top-level
values. This walker skips everything else by length (~0.1 ms). It covers only the common case:
preamble + 'DICM', little-endian (explicit or implicit VR), single-frame, plain or UTF-8/Latin-1
character set. Anything else - no preamble, big-endian, deflate, multi-frame functional groups,
other character sets, a header longer than the first read, anything malformed - returns None
and the caller uses pydicom. A differential test holds both paths to identical records.
"""

from __future__ import annotations

import struct
from pathlib import Path

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
READ_BYTES = 1 << 17
UNDEFINED = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UR", b"UT", b"UN", b"SV", b"UV"}
KNOWN_VRS = LONG_VRS | {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
                        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
PLAIN_CHARSETS = {"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 6"}

# (group << 16 | element): (keyword, VR) of every value base_record reads.
WANTED = {
    0x00020002: ("MediaStorageSOPClassUID", "UI"), 0x00020010: ("TransferSyntaxUID", "UI"),
    0x00080005: ("SpecificCharacterSet", "CS"), 0x00080008: ("ImageType", "CS"),
    0x00080016: ("SOPClassUID", "UI"), 0x00080018: ("SOPInstanceUID", "UI"),
    0x00080020: ("StudyDate", "DA"), 0x00080060: ("Modality", "CS"),
    0x00081030: ("StudyDescription", "LO"), 0x0008103E: ("SeriesDescription", "LO"),
    0x00100010: ("PatientName", "PN"), 0x00100020: ("PatientID", "LO"),
    0x00180050: ("SliceThickness", "DS"), 0x00180086: ("EchoNumbers", "IS"),
    0x00181164: ("ImagerPixelSpacing", "DS"),
    0x0020000D: ("StudyInstanceUID", "UI"), 0x0020000E: ("SeriesInstanceUID", "UI"),
    0x00200011: ("SeriesNumber", "IS"), 0x00200012: ("AcquisitionNumber", "IS"),
    0x00200013: ("InstanceNumber", "IS"), 0x00200032: ("ImagePositionPatient", "DS"),
    0x00200037: ("ImageOrientationPatient", "DS"), 0x00200052: ("FrameOfReferenceUID", "UI"),
    0x00200100: ("TemporalPositionIdentifier", "IS"),
    0x00280002: ("SamplesPerPixel", "US"), 0x00280004: ("PhotometricInterpretation", "CS"),
    0x00280008: ("NumberOfFrames", "IS"), 0x00280010: ("Rows", "US"), 0x00280011: ("Columns", "US"),
    0x00280030: ("PixelSpacing", "DS"), 0x00280100: ("BitsAllocated", "US"),
    0x00280101: ("BitsStored", "US"), 0x00280103: ("PixelRepresentation", "US"),
    0x00281050: ("WindowCenter", "DS"), 0x00281051: ("WindowWidth", "DS"),
    0x00281052: ("RescaleIntercept", "DS"), 0x00281053: ("RescaleSlope", "DS"),
}
# Their presence means per-frame geometry that only the full reader handles.
FALLBACK_TAGS = {0x52009229, 0x52009230, 0x3004000C}
PIXEL_DATA = 0x7FE00010
INT_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}


class HeaderValues(dict):
    """Keyword -> value, readable like the parts of a pydicom Dataset that base_record uses."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Unsupported(Exception):
    pass


def _decode(raw: bytes, vr: str, encoding: str):
    if vr in INT_FORMATS:
        fmt = INT_FORMATS[vr]
        count = len(raw) // struct.calcsize(fmt)
        values = struct.unpack(f"<{count}{fmt}", raw[: count * struct.calcsize(fmt)])
        return values[0] if count == 1 else list(values)
    text = raw.decode(encoding).rstrip(" \x00")
    if vr in ("DS", "IS"):
        parts = [p.strip() for p in text.split("\\")]
    elif vr == "UI":
        parts = [p.rstrip("\x00") for p in text.split("\\")]
    else:
        parts = [p.rstrip(" ") if vr != "CS" else p.strip() for p in text.split("\\")]
    return parts[0] if len(parts) == 1 else parts


def _skip_undefined(buf: bytes, pos: int, explicit: bool) -> int:
    """Position after an undefined-length sequence (or encapsulated value) starting at `pos`."""
    while True:
        if pos + 8 > len(buf):
            raise _Unsupported
        group, elem, length = struct.unpack_from("<HHI", buf, pos)
        pos += 8
        if group != 0xFFFE:
            raise _Unsupported
        if elem == 0xE0DD:  # sequence delimiter
            return pos
        if elem != 0xE000:
            raise _Unsupported
        if length == UNDEFINED:
            pos = _walk(buf, pos, explicit, None, "latin-1", item=True)
        else:
            pos += length


def _walk(buf: bytes, pos: int, explicit: bool, out: HeaderValues | None, encoding: str,
          item: bool = False, meta: bool = False) -> int:
    """Walk elements from `pos`; fill `out` (top level only). Returns where it stopped."""
    end = len(buf)
    while pos + 8 <= end:
        group, elem = struct.unpack_from("<HH", buf, pos)
        tag = group << 16 | elem
        if meta and group != 0x0002:
            return pos
        if group == 0xFFFE:
            if item and elem == 0xE00D:
                return pos + 8
            raise _Unsupported
        if explicit or meta:
            vr = buf[pos + 4:pos + 6]
            if vr not in KNOWN_VRS:
                raise _Unsupported
            if vr in LONG_VRS:
                if pos + 12 > end:
                    raise _Unsupported
                (length,) = struct.unpack_from("<I", buf, pos + 8)
                start = pos + 12
            else:
                (length,) = struct.unpack_from("<H", buf, pos + 6)
                start = pos + 8
            vr_name = vr.decode("ascii")
        else:
            (length,) = struct.unpack_from("<I", buf, pos + 4)
            start = pos + 8
            vr_name = WANTED.get(tag, ("", "UN"))[1]
        if out is not None:
            if tag == PIXEL_DATA:
                out["_pixel"] = (start, length)
                return pos
            if tag in FALLBACK_TAGS:
                raise _Unsupported
        if length == UNDEFINED:
            if not explicit and not meta and out is not None and tag in WANTED:
                raise _Unsupported
            pos = _skip_undefined(buf, start, explicit and vr_name != "UN")
            continue
        if start + length > end:
            raise _Unsupported
        if out is not None and tag in WANTED:
            keyword, wanted_vr = WANTED[tag]
            if keyword == "SpecificCharacterSet":
                value = _decode(buf[start:start + length], "CS", "ascii")
                charset = value if isinstance(value, str) else (value[0] if value else "")
                if charset not in PLAIN_CHARSETS:
                    raise _Unsupported
                encoding = "utf-8" if charset == "ISO_IR 192" else "latin-1"
            out[keyword] = _decode(buf[start:start + length], vr_name if explicit or meta else wanted_vr, encoding)
        pos = start + length
    if item:
        raise _Unsupported
    return pos


def read_header(path: Path) -> tuple[HeaderValues, str, tuple[int, int] | None, int] | None:
    """(values, transfer syntax, (pixel value offset, length) or None, file size), or None to fall back."""
    try:
        with open(path, "rb") as fp:
            buf = fp.read(READ_BYTES)
            size = fp.seek(0, 2)
    except OSError:
        return None
    if len(buf) < 144 or buf[128:132] != b"DICM":
        return None
    values = HeaderValues()
    try:
        pos = _walk(buf, 132, True, values, "ascii", meta=True)
        ts = values.get("TransferSyntaxUID", "")
        if ts not in (EXPLICIT_LE, IMPLICIT_LE) and not ts.startswith("1.2.840.10008.1.2.4.") \
                and ts != "1.2.840.10008.1.2.5":
            return None
        _walk(buf, pos, ts != IMPLICIT_LE, values, "latin-1")
    except (_Unsupported, struct.error, UnicodeDecodeError):
        return None
    if "_pixel" not in values and len(buf) < size:
        return None  # header longer than the first read: let pydicom handle it
    try:
        if int(values.get("NumberOfFrames", 1) or 1) > 1:
            return None
    except ValueError:
        return None
    pixel = values.pop("_pixel", None)
    return values, ts, pixel, size
