"""Write small real DICOM series for tests, with a marker voxel at a known LPS position.

Geometry tests check the reader against this independent statement of where each voxel is:
the marker's LPS position is computed here from the written tags, never from RadSight's code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

BACKGROUND = 0
MARKER = 1000


def make_slice_dataset(pixels: np.ndarray, position, orientation, spacing, *, study_uid, series_uid,
                       for_uid, instance_number: int, modality: str = "CT", series_number: int = 1,
                       slope: float = 1.0, intercept: float = -1024.0, photometric: str = "MONOCHROME2",
                       description: str = "SYNTHETIC TEST") -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "SYNTHETIC^TEST"
    ds.PatientID = "RS-TEST-0001"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20250115", "120000", "1", ""
    ds.ReferringPhysicianName, ds.PatientBirthDate, ds.PatientSex = "", "19700101", "O"
    ds.Manufacturer, ds.KVP, ds.AcquisitionNumber = "RadSight", "120", 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.FrameOfReferenceUID = for_uid
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
    ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (y), column spacing (x)
    ds.SliceThickness = "1.0"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.PixelData = pixels.astype("<i2").tobytes()
    return ds


def write_series(folder: Path, *, shape_zyx=(12, 20, 24), spacing_xy=(0.8, 0.9), step=2.0,
                 orientation=(1, 0, 0, 0, 1, 0), origin=(-10.0, -8.0, 30.0), shear=(0.0, 0.0, 0.0),
                 positions=None, marker_ijk=(5, 7, 4), instance_order="increasing", names="sequential",
                 seed=0, series_uid=None, study_uid=None, series_number=1) -> dict:
    """Write one series; returns the truth: positions, the marker's LPS position, file paths.

    `shear` is added to each slice's position per slice index (gantry tilt); `positions`
    overrides the computed ones (gaps, duplicates). The marker is 1 voxel of value MARKER HU.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape_zyx
    row = np.asarray(orientation[:3], float)
    col = np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    if positions is None:
        positions = [np.asarray(origin) + k * step * normal + k * np.asarray(shear) for k in range(nz)]
    positions = [np.asarray(p, float) for p in positions]
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    for_uid = generate_uid()
    mi, mj, mk = marker_ijk
    order = list(range(len(positions)))
    numbers = {k: (k + 1 if instance_order == "increasing" else len(positions) - k) for k in order}
    file_order = list(order)
    if names == "shuffled":
        rng.shuffle(file_order)
    paths = []
    for n, k in enumerate(file_order):
        pixels = np.full((ny, nx), BACKGROUND - (-1024), dtype=np.int16)  # stored = HU + 1024
        pixels += (k * 3) % 50  # slice-dependent texture so order mistakes show
        if k == mk:
            pixels[mj, mi] = MARKER + 1024
        ds = make_slice_dataset(pixels, positions[k], orientation, spacing_xy, study_uid=study_uid,
                                series_uid=series_uid, for_uid=for_uid, instance_number=numbers[k],
                                series_number=series_number)
        name = f"IM{n:04d}.dcm" if names == "sequential" else f"{rng.integers(1e9):09d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    marker_lps = positions[mk] + mi * spacing_xy[0] * row + mj * spacing_xy[1] * col
    return {"positions": positions, "marker_lps": marker_lps, "paths": paths, "series_uid": series_uid,
            "study_uid": study_uid, "normal": normal, "row": row, "col": col}


def write_blob_ct(folder, centre, radius=4.0, shape=(40, 44, 48), spacing=(0.9, 0.8), step=1.2, degrees=25.0):
    """A CT series rotated `degrees` about the patient axis (oblique axial planes) holding one
    sphere of 100 HU in -800 HU lung-like background; the sphere's LPS centre is `centre`."""
    a = np.radians(degrees)
    row, col = np.array([np.cos(a), np.sin(a), 0.0]), np.array([-np.sin(a), np.cos(a), 0.0])
    normal = np.cross(row, col)
    nz, ny, nx = shape
    origin = np.asarray(centre) - (nx / 2 * spacing[0] * row + ny / 2 * spacing[1] * col + nz / 2 * step * normal)
    j, i = np.mgrid[:ny, :nx]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(nz):
        position = origin + k * step * normal
        lps = position + i[..., None] * spacing[0] * row + j[..., None] * spacing[1] * col
        inside = np.linalg.norm(lps - np.asarray(centre), axis=-1) <= radius
        hu = np.where(inside, 100, -800).astype(np.int16)
        ds = make_slice_dataset(hu + 1024, position, (*row, *col), spacing, study_uid=study, series_uid=series,
                                for_uid=frame, instance_number=k + 1)
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return folder
