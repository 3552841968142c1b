"""Generate a synthetic longitudinal chest CT study set with its ground truth.

Layout under the output root:

    ground_truth.json
    T0_20250115/dicom/IM00001.dcm ...   (visit 0's CT series: the study_dir)
    T0_20250115/labels.nii.gz           (labels on the same grid and LPS geometry)
    T1_20250416/...

The label map sits beside the DICOM folder, not in it, so scanning a study_dir finds DICOM only.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.demo import anatomy as A
from viewer.demo.grid import RigidMotion, ScanGrid, make_grid
from viewer.demo.nodules import PlacedNodule, axial_diameters_mm
from viewer.demo.phantom import DEFAULT_HORIZON_DAYS, Phantom
from viewer.demo.raster import NOISE_SIGMA_HU, add_noise, render_slab
from viewer.demo.writer import (PATIENT_BIRTH_DATE, PATIENT_ID, PATIENT_NAME, PATIENT_SEX,
                                SeriesIdentity, SeriesWriter, write_labels)

GENERATOR_VERSION = "1.0.0"
BASELINE_DATE = dt.date(2025, 1, 15)
# Days after baseline for each number of visits: follow-ups at 3 and 12 months, or one at 6.
VISIT_SCHEDULES: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 182), 3: (0, 91, 365)}
SLAB_VOXELS = 1_200_000

Progress = Callable[[int, int, str], None]

CONVENTIONS = {
    "frames": "The phantom is defined in an anatomy frame equal to visit 0's scanner LPS frame. "
              "Visit v sees it through transform.anatomy_to_scanner: p_v = R p_anatomy + t. "
              "All *_lps_mm values are in that visit's own scanner LPS frame (after motion).",
    "volume_mm3": "Analytic ellipsoid volume 4/3*pi*a*b*c of the whole nodule (ground-glass "
                  "halo included for part-solid). 0.0 when the nodule is not present.",
    "solid_volume_mm3": "Part-solid only: volume of the concentric solid core; null otherwise.",
    "solid_mean_diameter_mm": "Part-solid only: mean axial diameter of the solid core (the core "
                              "is the nodule scaled by a fixed fraction); null otherwise.",
    "vdt_days": "Volume doubling time: V(t) = V(t_ref) * 2**((t - t_ref)/vdt_days), all three "
                "semi-axes scaled by the cube root. Negative for a shrinking nodule: then "
                "-vdt_days is the volume halving time. null for stable nodules.",
    "mean_diameter_mm": "Lung-RADS style: mean of long_axis_mm and short_axis_mm, the long and "
                        "short axes of the largest axial cross-section. For an ellipsoid that is "
                        "the central axial section, computed exactly from the visit's rotated "
                        "semi-axes (an ideal measurement, no voxelisation).",
    "present": "false when the nodule does not exist yet at this visit (status 'new' at "
               "baseline); its centre is then where it will appear and its sizes are null.",
    "labels": "labels.nii.gz: majority occupancy on the DICOM grid (k ascending in z, identity "
              "direction, origin = centre of the first voxel of the lowest slice).",
    "juxtapleural": "The nodule reaches about 1 mm through the costal pleura into the chest wall.",
    "juxtavascular": "The nodule overlaps a pulmonary vessel of 1.5-3 mm radius by about "
                     "0.6 mm at its smallest size.",
}


@dataclass(frozen=True)
class DemoVisit:
    index: int
    day: int
    date: dt.date
    study_dir: Path          # the folder with this visit's DICOM files
    labels_path: Path
    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    motion: RigidMotion
    n_files: int


@dataclass(frozen=True)
class DemoStudySet:
    root: Path
    ground_truth_path: Path
    visits: list[DemoVisit]
    seed: int
    preset: str
    grid: ScanGrid

    def ground_truth(self) -> dict:
        return json.loads(self.ground_truth_path.read_text())


def _schedule(n_visits: int, visit_days) -> tuple[int, ...]:
    if visit_days is not None:
        days = tuple(int(d) for d in visit_days)
        if len(days) != n_visits:
            raise ValueError(f"visit_days has {len(days)} entries but n_visits is {n_visits}")
        if days[0] != 0 or any(b <= a for a, b in zip(days, days[1:])):
            raise ValueError(f"visit_days must start at 0 and increase; got {list(days)}")
        return days
    if n_visits not in VISIT_SCHEDULES:
        raise ValueError(f"n_visits must be 1, 2 or 3 (or pass visit_days); got {n_visits}")
    return VISIT_SCHEDULES[n_visits]


def visit_motion(seed: int, visit: int) -> RigidMotion:
    """Identity at baseline (the anatomy frame), a fresh small repositioning at each follow-up."""
    if visit == 0:
        return RigidMotion()
    return RigidMotion.sample(np.random.default_rng([seed, 3, visit]))


def generate_demo(out_dir: Path | str, preset: str = "demo", n_visits: int = 3, seed: int = 0,
                  progress: Progress | None = None, *, visit_days=None, rows: int | None = None,
                  cols: int | None = None, n_slices: int | None = None,
                  pixel_spacing: float | None = None,
                  slice_spacing: float | None = None) -> DemoStudySet:
    """Write the synthetic patient's visits as DICOM CT series plus labels and ground truth.

    The same seed gives byte-identical pixels and the same UIDs. `progress(done, total,
    message)` is called after each slab of slices.
    """
    grid = make_grid(preset, rows, cols, n_slices, pixel_spacing, slice_spacing)
    days = _schedule(n_visits, visit_days)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    phantom = Phantom.build(seed, horizon_day=max(DEFAULT_HORIZON_DAYS, float(days[-1])))

    n_slabs = -(-grid.n_slices * grid.rows * grid.cols // SLAB_VOXELS)
    slab = -(-grid.n_slices // n_slabs)
    slabs = [(k, min(k + slab, grid.n_slices)) for k in range(0, grid.n_slices, slab)]
    total = len(days) * len(slabs)
    done = 0
    visits = []
    for v, day in enumerate(days):
        date = BASELINE_DATE + dt.timedelta(days=day)
        visit_dir = root / f"T{v}_{date:%Y%m%d}"
        study_dir = visit_dir / "dicom"
        if study_dir.is_dir():
            # Stale slices from an earlier run with another grid would join this series.
            for old in study_dir.glob("IM?????.dcm"):
                old.unlink()
        ident = SeriesIdentity.make(seed, v, date, GENERATOR_VERSION)
        motion = visit_motion(seed, v)
        writer = SeriesWriter(study_dir, grid, ident)
        labels = np.zeros((grid.n_slices, grid.rows, grid.cols), dtype=np.uint8)
        for k0, k1 in slabs:
            hu, lab = render_slab(phantom, grid, motion, day, k0, k1)
            add_noise(hu, seed, v, k0)
            labels[k0:k1] = lab
            for n in range(k1 - k0):
                writer.write_slice(k0 + n, hu[n])
            done += 1
            if progress is not None:
                progress(done, total, f"visit {v + 1}/{len(days)} ({date}): slices {k0 + 1}-{k1} "
                                      f"of {grid.n_slices}")
        labels_path = write_labels(visit_dir / "labels.nii.gz", labels, grid)
        visits.append(DemoVisit(v, day, date, study_dir, labels_path, ident.study_uid,
                                ident.series_uid, ident.frame_of_reference_uid, motion,
                                len(writer.paths)))

    truth = ground_truth(phantom, grid, preset, seed, visits, root)
    path = root / "ground_truth.json"
    path.write_text(json.dumps(truth, indent=2) + "\n")
    return DemoStudySet(root, path, visits, seed, preset, grid)


def nodule_truth(nodule: PlacedNodule, day: float, motion: RigidMotion) -> dict:
    """One nodule at one visit, in that visit's scanner frame."""
    spec = nodule.spec
    present = nodule.present(day)
    rotation = motion.rotation @ nodule.rotation
    out = {
        "id": spec.id,
        "label": A.LABEL_NODULE_BASE + nodule.index,
        "kind": spec.kind,
        "status": spec.status,
        "vdt_days": spec.vdt_days,
        "reference_day": spec.reference_day,
        "onset_day": spec.onset_day,
        "present": present,
        "centre_lps_mm": motion.apply(nodule.centre).tolist(),
        "juxtapleural": spec.juxtapleural,
        "juxtavascular": spec.juxtavascular,
        "nominal_hu": nodule.hu,
        "core_hu": nodule.core_hu,
    }
    if not present:
        out.update(semi_axes_mm=None, axis_directions_lps=None, volume_mm3=0.0,
                   solid_volume_mm3=0.0 if spec.core_fraction is not None else None,
                   equivalent_diameter_mm=None, long_axis_mm=None, short_axis_mm=None,
                   mean_diameter_mm=None, solid_mean_diameter_mm=None)
        return out
    semi = nodule.semi_axes(day)
    long_axis, short_axis = axial_diameters_mm(semi, rotation)
    volume = nodule.volume_mm3(day)
    solid_mean = None
    if spec.core_fraction is not None:
        solid_mean = (long_axis + short_axis) / 2.0 * spec.core_fraction
    out.update(
        semi_axes_mm=semi.tolist(),
        axis_directions_lps=rotation.T.tolist(),  # row n: direction of semi_axes_mm[n]
        volume_mm3=volume,
        solid_volume_mm3=nodule.solid_volume_mm3(day),
        equivalent_diameter_mm=float((6.0 * volume / np.pi) ** (1.0 / 3.0)),
        long_axis_mm=long_axis,
        short_axis_mm=short_axis,
        mean_diameter_mm=(long_axis + short_axis) / 2.0,
        solid_mean_diameter_mm=solid_mean,
    )
    return out


def ground_truth(phantom: Phantom, grid: ScanGrid, preset: str, seed: int,
                 visits: list[DemoVisit], root: Path) -> dict:
    references = phantom.reference_points()
    labels = {str(k): v for k, v in A.LABEL_NAMES.items()}
    for n in phantom.nodules:
        labels[str(A.LABEL_NODULE_BASE + n.index)] = f"nodule {n.spec.id}"
    return {
        "generator": "viewer.demo",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "preset": preset,
        "synthetic": True,
        "patient": {"name": PATIENT_NAME, "id": PATIENT_ID,
                    "birth_date": PATIENT_BIRTH_DATE.isoformat(), "sex": PATIENT_SEX},
        "grid": grid.to_json(),
        "labels": labels,
        "tissue_hu": {"air": A.HU_AIR, "fat": A.HU_FAT, "muscle": A.HU_MUSCLE,
                      "lung": A.HU_LUNG, "blood": A.HU_BLOOD, "cortical_bone": A.HU_CORTICAL,
                      "cancellous_bone": A.HU_CANCELLOUS},
        "noise_sigma_hu": NOISE_SIGMA_HU,
        "conventions": CONVENTIONS,
        "visits": [{
            "index": v.index,
            "day": v.day,
            "study_date": v.date.isoformat(),
            "study_dir": v.study_dir.relative_to(root).as_posix(),
            "labels_path": v.labels_path.relative_to(root).as_posix(),
            "n_files": v.n_files,
            "study_instance_uid": v.study_uid,
            "series_instance_uid": v.series_uid,
            "frame_of_reference_uid": v.frame_of_reference_uid,
            "transform": v.motion.to_json(),
            "reference_points": [{"tissue": p.tissue, "lps_mm": v.motion.apply(p.point).tolist(),
                                  "nominal_hu": p.hu} for p in references],
            "nodules": [nodule_truth(n, v.day, v.motion) for n in phantom.nodules],
        } for v in visits],
    }
