"""Heatmaps as DICOM Parametric Maps (highdicom): relevance values, the source series referenced,
the model and method named; and reading them back.

By default the relevance in [0, 1] is written as 32-bit Float Pixel Data. DICOM allows a colour
palette only with integer pixel data, so `palette="inferno"` (any matplotlib colour map) writes
12-bit integers whose Real World Value Mapping gives the floating-point values back (precision
1/4095), a 4096-entry palette, an sRGB ICC profile and the stored value range it spans.
dciodvfy (dicom3tools) reports that variant's palette tables against the Image Pixel Description
macro, whose condition (Photometric Interpretation PALETTE COLOR) a colour-range Parametric Map
does not meet although its Palette Color Lookup Table module requires them, and the stored value
range (FD) against a string check; the float variant validates without errors.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from viewer import __version__
from viewer.core.errors import RadSightError
from viewer.core.results import Heatmap
from viewer.core.volume import Volume
from viewer.dicom.series import Series

LEVELS = 4095  # stored integers 0..4095 for relevance 0..1
NO_UNITS = hd.sr.CodedConcept("1", "UCUM", "no units")
# DCM 113051 "Heat Map" would be ideal, but the standard names no concept for attribution maps;
# the quantity is named by the mapping's label and explanation instead.


def _hd_affine(volume: Volume) -> np.ndarray:
    """highdicom indexes (slice, row, column) = our (k, j, i): the same matrix, columns reversed."""
    affine = np.array(volume.affine, float)
    affine[:3, :3] = affine[:3, :3][:, ::-1]
    return affine


def describe(heatmap: Heatmap) -> str:
    layer = f" at {heatmap.layer}" if heatmap.layer else ""
    return (f"{heatmap.method}{layer} of {heatmap.model.id} {heatmap.model.version} for "
            f"'{heatmap.target.name}' (p={heatmap.probability:.3f})")


def write_parametric_map(heatmap: Heatmap, series: Series, path: Path | str, *, palette: str | None = None,
                         series_number: int = 901) -> Path:
    """Write `heatmap` (on its own grid, in the series' frame of reference) as a Parametric Map
    whose source images are the series' images."""
    values = heatmap.values
    if series.first.frame_of_reference_uid and values.frame_of_reference_uid and \
            values.frame_of_reference_uid != series.first.frame_of_reference_uid:
        raise RadSightError(f"{series.label}: the heatmap is in another frame of reference than the series")
    sources = [pydicom.dcmread(r.path, stop_before_pixels=True) for r in series.plan.records]
    relevance = np.clip(np.nan_to_num(values.voxels.astype(np.float32)), 0.0, 1.0)
    text = describe(heatmap)
    lut = None
    if palette is None:
        pixels = relevance
        mapping = hd.pm.RealWorldValueMapping("RELEVANCE", text[:64], NO_UNITS, (0.0, 1.0), slope=1.0, intercept=0.0)
    else:
        pixels = np.rint(relevance * LEVELS).astype(np.uint16)
        mapping = hd.pm.RealWorldValueMapping("RELEVANCE", text[:64], NO_UNITS, (0, LEVELS),
                                              slope=1.0 / LEVELS, intercept=0.0)
        lut = hd.PaletteColorLUTTransformation.from_combined_lut(
            _palette(palette), first_mapped_value=0, palette_color_lut_uid=generate_uid())
    float_pixels = lut is None
    volume = hd.Volume(pixels, _hd_affine(values), "PATIENT", series.first.frame_of_reference_uid or None)
    pm = hd.pm.ParametricMap(
        source_images=sources, pixel_array=volume, series_instance_uid=generate_uid(),
        series_number=series_number, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="RadSight", manufacturer_model_name="RadSight", software_versions=__version__,
        device_serial_number="0", contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping], content_label="RELEVANCE",
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=0.5 if float_pixels else LEVELS / 2,
                                                         window_width=1.0 if float_pixels else float(LEVELS))],
        content_description=text[:64], content_creator_name="RadSight^AI",
        palette_color_lut_transformation=lut, icc_profile=None if float_pixels else _srgb_profile(), derivation=codes.DCM.ImageProcessing,
        series_description=f"AI {heatmap.method} {heatmap.model.id}"[:64])
    # General Series Laterality is due (2C) when the body part may be paired: name the source's
    # body part so validators can tell, or record the laterality as unknown (empty).
    if sources[0].get("BodyPartExamined"):
        pm.BodyPartExamined = sources[0].BodyPartExamined
    else:
        pm.Laterality = ""
    if not float_pixels:
        # The Stored Value Color Range macro (PS3.3 C.7.6.16.2.31) says which stored values the
        # palette spans; highdicom does not write it, so it is added here for every frame.
        color_range = pydicom.Dataset()
        color_range.MinimumStoredValueMapped, color_range.MaximumStoredValueMapped = 0.0, float(LEVELS)
        pm.SharedFunctionalGroupsSequence[0].StoredValueColorRangeSequence = [color_range]
        # The palette is embedded (Palette Color Lookup Table module); its UID is for referring to
        # a palette stored elsewhere instead, and both together are not allowed.
        del pm.PaletteColorLookupTableUID
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.save_as(path)
    return path


def _palette(name: str) -> np.ndarray:
    """(4096, 3) 16-bit colours of a matplotlib colour map, entry n for stored value n (an 8-bit
    table may hold at most 256 entries)."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError:
        raise RadSightError(f"unknown colour map {name!r}") from None
    return np.rint(cmap(np.linspace(0.0, 1.0, LEVELS + 1))[:, :3] * 65535).astype(np.uint16)


def _srgb_profile() -> bytes:
    """The sRGB ICC profile a colour-range map must carry (Pillow builds it; no file shipped).
    highdicom accepts only input ('scnr') or colour-space ('spac') profiles, as PS3.3 C.11.15
    describes the profile as the colour space of the stored colours; Pillow labels its sRGB
    profile a display ('mntr') profile, so its device class field (bytes 12-15) is set to 'spac'."""
    from PIL import ImageCms

    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    data[12:16] = b"spac"
    return bytes(data)


def read_parametric_map(path: Path | str, like: Volume | None = None) -> tuple[Volume, str]:
    """The map's real-world values as a Volume on its own grid (affine from the frames' positions)
    and its content description. `like` lends the source identity for display."""
    try:
        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(str(path)))
        hv = pm.get_volume(dtype=np.float32, apply_real_world_transform=True, apply_palette_color_lut=False,
                           apply_icc_profile=False)
    except Exception as exc:  # pydicom / highdicom raise many types for damaged or foreign files
        raise RadSightError(f"{path}: not a readable Parametric Map ({type(exc).__name__}: {exc})") from None
    array = np.asarray(hv.array, np.float32)
    affine = np.array(hv.affine, float)
    affine[:3, :3] = affine[:3, :3][:, ::-1]
    kwargs = {"source": like.source, "display": like.display} if like is not None else {}
    return Volume(np.ascontiguousarray(array), affine, hv.frame_of_reference_uid, unit="1", **kwargs), \
        str(pm.get("ContentDescription", ""))
