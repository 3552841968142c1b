"""A validation set made by the demo generator: N synthetic patients (one visit each), each a DICOM
CT series with its ground truth as a nodule label map, `reference_nodules.nii.gz` (one value per
nodule: the generator's nodule label), which the label-map reader reads like any NIfTI reference.
The generator's anatomy labels (lung, vessels, ...) are removed: they are not lesions. Used by
`radsight validate --make-demo-set DIR` and the tests.

    DIR/case00/T0_20250115/dicom/IM00001.dcm ...
    DIR/case00/T0_20250115/reference_nodules.nii.gz
    DIR/case00/ground_truth.json
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viewer.demo import anatomy
from viewer.demo.generate import generate_demo


def make_demo_set(out: Path | str, cases: int, seed: int = 1000, preset: str = "small", progress=None) -> list[Path]:
    """Write `cases` synthetic studies (seeds seed, seed + 1, ...) and return their folders."""
    import SimpleITK as sitk

    if cases < 1:
        raise ValueError(f"cases must be at least 1; got {cases}")
    out = Path(out)
    folders = []
    for n in range(cases):
        demo = generate_demo(out / f"case{n:02d}", preset=preset, n_visits=1, seed=seed + n, progress=progress)
        visit = demo.visits[0]
        image = sitk.ReadImage(str(visit.labels_path))
        labels = sitk.GetArrayFromImage(image)
        nodules = np.where(labels >= anatomy.LABEL_NODULE_BASE, labels, 0).astype(np.uint8)
        reference = sitk.GetImageFromArray(nodules)
        reference.CopyInformation(image)
        sitk.WriteImage(reference, str(visit.labels_path.parent / "reference_nodules.nii.gz"), useCompression=True)
        visit.labels_path.unlink()
        folders.append(demo.root)
    return folders
