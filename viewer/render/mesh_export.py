"""Which labels a study's bio-model is made of, and the export itself (`radsight export-mesh`).

Labels come from, in order: a file the user names (NIfTI/NRRD label map or DICOM SEG); else the
study's stored results: the anatomy from the newest SEG of the series in the store, or from the
demo's labels.nii.gz beside a demo visit's dicom/ folder (preferred: it has more structures), and
the nodules the store keeps for the series (each with its own mask and id; rejected ones left
out), else the SEG's nodule segments; when nothing is stored, the models and plugin analyses run
as `radsight analyze` runs them. Each nodule is its own part: a SEG nodule segment is split into
connected pieces named after the stored nodule record whose centre lies in the piece.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from viewer.core.errors import RadSightError
from viewer.core.volume import Volume
from viewer.render.meshes import MeshPart, is_finding_name, label_meshes, mesh_parts
from viewer.render.mesh_writers import write_meshes

Progress = Callable[[int, int, str], None]
SEG_NODULE_BASE = 100  # label values given to the pieces of a SEG nodule segment
DEMO_LABELS_NAME = "labels.nii.gz"
MAX_LABELS = 1000


class LabelSource:
    """A label volume with its names, the values that are findings, and where it came from."""

    def __init__(self, labels: Volume, names: dict[int, str], findings: set[int], source: str):
        if np.asarray(labels.voxels).dtype.kind not in "biu":
            raise ValueError(f"{source}: label voxels must be integers; got {labels.voxels.dtype}")
        self.labels, self.names, self.findings, self.source = labels, names, findings, source

    def parts(self, values=None) -> list[MeshPart]:
        """The mesh parts (names, colours, findings highlighted) of `values`, else of every label present."""
        present = np.unique(self.labels.voxels) if values is None else values
        return mesh_parts(present, self.names, sorted(self.findings))


def _is_dicom_seg(path: Path) -> bool:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:
        return False
    return str(ds.get("Modality", "")) == "SEG"


def _demo_names(labels_path: Path) -> dict[int, str]:
    """Label names from the demo's ground_truth.json (one or two folders up), else none."""
    for folder in (labels_path.parent, labels_path.parent.parent):
        truth = folder / "ground_truth.json"
        if truth.is_file():
            try:
                return {int(k): str(v) for k, v in json.loads(truth.read_text())["labels"].items()}
            except (ValueError, KeyError, TypeError):
                return {}
    return {}


def read_label_file(path: Path | str, study: Volume | None) -> LabelSource:
    """A NIfTI/NRRD label map or a DICOM SEG (placed on `study`'s grid); errors name the file."""
    from viewer.dicom import load

    path = Path(path)
    if not path.is_file():
        raise RadSightError(f"{path}: no such labels file")
    if _is_dicom_seg(path):
        if study is None:
            raise RadSightError(f"{path}: a DICOM SEG needs the study it segments")
        return seg_source(path, study)
    try:
        labels = load(path)
    except Exception as exc:
        raise RadSightError(f"{path}: not a label volume (NIfTI, NRRD or DICOM SEG): {exc}") from None
    voxels = np.asarray(labels.voxels)
    if voxels.dtype.kind == "f":
        if not np.all(np.isfinite(voxels)) or not np.array_equal(voxels, np.round(voxels)):
            raise RadSightError(f"{path}: holds non-integer values ({voxels.dtype}), so it is an image, not a "
                                "label map; pass the segmentation instead")
        labels = labels.with_voxels(voxels.astype(np.int32))
    elif voxels.dtype.kind not in "biu":
        raise RadSightError(f"{path}: voxels of type {voxels.dtype} are not labels")
    if not np.any(labels.voxels):
        raise RadSightError(f"{path}: every voxel is 0 (background); nothing to mesh")
    values = np.unique(labels.voxels)
    if values[0] < 0 or len(values) > MAX_LABELS:
        raise RadSightError(f"{path}: {len(values)} distinct values from {values[0]} to {values[-1]}: an image, not "
                            f"a label map (labels are 0..N with at most {MAX_LABELS} values); pass the segmentation")
    names = _demo_names(path)
    return LabelSource(labels, names, {v for v, n in names.items() if is_finding_name(n)}, str(path))


def _nodule_names(pieces: np.ndarray, count: int, labels: Volume, records: list[dict]) -> dict[int, str]:
    names = {}
    for record in records:
        centre = record.get("centre_lps_mm")
        if not centre or not record.get("id"):
            continue
        i, j, k = np.round(labels.lps_to_index(centre)).astype(int)
        if 0 <= k < pieces.shape[0] and 0 <= j < pieces.shape[1] and 0 <= i < pieces.shape[2] and pieces[k, j, i]:
            names.setdefault(int(pieces[k, j, i]), f"nodule {record['id']}")
    taken = set(names.values())
    n = 1
    for piece in range(1, count + 1):
        while piece not in names:
            candidate = f"nodule {n}"
            n += 1
            if candidate not in taken:
                names[piece] = candidate
    return names


def seg_source(path: Path | str, study: Volume, records: list[dict] | None = None) -> LabelSource:
    """A DICOM SEG's segments on the study grid; each nodule segment split into its pieces."""
    from scipy import ndimage

    from viewer.dicom.seg import read_seg_labels

    try:
        labels, segment_names = read_seg_labels(path, study)
    except RadSightError:
        raise
    except Exception as exc:
        raise RadSightError(f"{path}: not a readable DICOM SEG: {type(exc).__name__}: {exc}") from None
    voxels = np.asarray(labels.voxels).astype(np.int32)
    names, findings = {}, set()
    for number, name in segment_names.items():
        if not is_finding_name(name):
            names[number] = name
            continue
        pieces, count = ndimage.label(voxels == number, structure=np.ones((3, 3, 3)))
        piece_names = _nodule_names(pieces, count, labels, records or [])
        for piece in range(1, count + 1):
            value = SEG_NODULE_BASE + len(findings) + 1
            voxels[pieces == piece] = value
            names[value] = piece_names[piece]
            findings.add(value)
    return LabelSource(labels.with_voxels(voxels), names, findings, str(path))


def combine(anatomy: LabelSource, nodules: LabelSource) -> LabelSource:
    """The anatomy's non-finding labels with the other source's findings painted over them."""
    if anatomy.labels.shape != nodules.labels.shape or not np.allclose(anatomy.labels.affine, nodules.labels.affine,
                                                                      atol=1e-3):
        raise ValueError("grids differ")
    voxels = np.asarray(anatomy.labels.voxels).astype(np.int32)
    voxels[np.isin(voxels, list(anatomy.findings))] = 0
    stored = np.asarray(nodules.labels.voxels)
    for value in nodules.findings:
        voxels[stored == value] = value
    names = {v: n for v, n in anatomy.names.items() if v not in anatomy.findings}
    names.update({v: nodules.names[v] for v in nodules.findings})
    return LabelSource(anatomy.labels.with_voxels(voxels), names, set(nodules.findings),
                       f"{anatomy.source} + nodules from {nodules.source}")


def _paste_region(mask: Volume, study: Volume):
    """Where a (cropped) mask lies in the study grid: (slices, boolean mask clipped to the grid),
    or None when its voxels are not the study's voxels (other spacing, rotation or a sub-voxel shift)."""
    if not np.allclose(mask.affine[:3, :3], study.affine[:3, :3], atol=1e-4):
        return None
    offset = study.lps_to_index(mask.origin)[::-1]  # (k, j, i)
    if not np.allclose(offset, np.round(offset), atol=1e-3):
        return None
    lo = np.round(offset).astype(int)
    hi = lo + np.array(mask.shape)
    a, b = np.maximum(lo, 0), np.minimum(hi, study.shape)
    if np.any(b <= a):
        return None
    inside = np.asarray(mask.voxels)[tuple(slice(x - o, y - o) for x, y, o in zip(a, b, lo))] > 0
    return tuple(slice(x, y) for x, y in zip(a, b)), inside


def stored_nodules(store, series_key: str, study: Volume,
                   log: Callable[[str], None] = lambda _: None) -> LabelSource | None:
    """The store's nodules of the series (not rejected, with a mask on the study grid) as labels."""
    voxels = np.zeros(study.shape, np.int32)
    names: dict[int, str] = {}
    for row in store.nodules(series_key):
        if (row.get("decision") or {}).get("decision") == "rejected" or not row["has_mask"]:
            continue
        mask = store.nodule_mask(row["id"])
        where = _paste_region(mask, study)
        if where is None:
            log(f"nodule {row['current'].get('id')}: its mask is not on the study's grid; left out")
            continue
        value = SEG_NODULE_BASE + len(names) + 1
        region, inside = where
        voxels[region][inside] = value
        names[value] = f"nodule {row['current'].get('id') or len(names) + 1}"
    names = {v: n for v, n in names.items() if np.any(voxels == v)}
    if not names:
        return None
    return LabelSource(study.with_voxels(voxels), names, set(names), f"{len(names)} stored nodules")


def study_labels(path: Path | str, labels_path: Path | str | None = None, store=None,
                 progress: Progress | None = None, log: Callable[[str], None] = lambda _: None) -> tuple[LabelSource, dict]:
    """The labels to mesh for the study at `path` (see the module docstring) and the study facts."""
    from viewer.dicom import load_series, open_path

    path = Path(path)
    if not path.exists():
        raise RadSightError(f"{path}: no such file or folder")
    series_list, result = open_path(path)
    if not series_list:
        raise RadSightError(f"{path}: no image series found ({len(result.problems)} unreadable files)")
    series = max(series_list, key=lambda s: len(s.records))
    study = load_series(series)
    facts = {"study_uid": series.first.study_uid, "series_uid": series.first.series_uid}
    if labels_path is not None:
        return read_label_file(labels_path, study), facts
    seg = nodules = None
    if store is not None:
        store.import_scan(series_list, result)
        records = [n["current"] for n in store.nodules(series.key)]
        segs = [r for r in store.results(series.key) if r["kind"] == "seg" and Path(r["path"]).is_file()]
        if segs:
            seg = seg_source(segs[-1]["path"], study, records)
        nodules = stored_nodules(store, series.key, study, log)
    demo = next((p for p in (path / DEMO_LABELS_NAME, path.parent / DEMO_LABELS_NAME) if p.is_file()), None)
    anatomy = read_label_file(demo, study) if demo is not None else seg
    if anatomy is None and nodules is None:
        log("no stored segmentation for this study: running the models as `radsight analyze` does")
        from viewer.plugins.study_analysis import analyze_study

        data = analyze_study(path, path.resolve().parent / "radsight-results", store=store, progress=progress)
        if data["outputs"].get("seg"):
            anatomy = seg = seg_source(data["outputs"]["seg"][0], study, data.get("nodules", []))
        if store is not None:
            nodules = stored_nodules(store, series.key, study, log)
        if anatomy is None and nodules is None:
            raise RadSightError(f"{path}: the models found nothing to segment, so there is nothing to mesh")
    if nodules is None and seg is not None and seg.findings:
        nodules = seg
    if anatomy is None:
        return nodules, facts
    if nodules is not None:
        try:
            return combine(anatomy, nodules), facts
        except ValueError:
            log(f"{anatomy.source} is on another grid than the nodules; meshing it without them")
    return anatomy, facts


def export_meshes(source: LabelSource, out: Path | str, formats: list[str], quality: str = "standard",
                  progress: Progress | None = None) -> dict:
    """Mesh every label of `source`, write `formats` into `out`; the export-mesh JSON (less study_uid)."""
    meshes = label_meshes(source.labels, source.parts(), quality, progress)
    written = write_meshes(meshes, out, formats)
    labels = []
    for mesh in meshes:
        item = mesh.to_json()
        item["files"] = written["by_label"].get(mesh.part.value, {})
        labels.append(item)
    return {"labels_source": source.source, "quality": quality, "labels": labels, "files": written["files"]}
