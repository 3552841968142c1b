"""Core volumes as VTK images, and the LPS <-> VTK input-space mapping used by reslicing.

The vtkImageData is kept in 'scaled index space' (origin 0, identity direction, the volume's
spacing) and the volume's rotation and origin are folded into each reslice matrix instead, so
correctness does not depend on which VTK filters honour vtkImageData's direction matrix.
"""

from __future__ import annotations

import numpy as np
import vtk
from vtk.util.numpy_support import numpy_to_vtk

from viewer.core.volume import Volume


def to_vtk_image(volume: Volume, name: str = "values") -> vtk.vtkImageData:
    """Zero-copy when possible: numpy (z, y, x) C order is VTK's x-fastest point order."""
    voxels = np.ascontiguousarray(volume.voxels)
    if voxels.dtype == np.bool_:
        voxels = voxels.astype(np.uint8)
    image = vtk.vtkImageData()
    nz, ny, nx = voxels.shape
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(*volume.spacing)
    image.SetOrigin(0.0, 0.0, 0.0)
    array = numpy_to_vtk(voxels.reshape(-1), deep=False)
    array.SetName(name)
    image.GetPointData().SetScalars(array)
    image._numpy_keepalive = voxels  # VTK does not own numpy memory
    return image


def lps_to_input_matrix(volume: Volume) -> np.ndarray:
    """4x4 mapping LPS mm to the scaled index space of `to_vtk_image`."""
    rigid = np.eye(4)
    rigid[:3, :3] = volume.direction
    rigid[:3, 3] = volume.origin
    return np.linalg.inv(rigid)


def vtk_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    out = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out
