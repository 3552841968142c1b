"""Is a surface mesh fit to print? Open and non-manifold edges, orientation, pieces, and the enclosed
volume against the mask it came from.

A slicer for 3-D printing needs a closed 2-manifold: every edge shared by exactly two triangles
that traverse it in opposite directions. The enclosed volume (vtkMassProperties, divergence
theorem) is compared with the mask volume (voxel count x voxel volume), the number a radiologist
would quote, so a smoothing step that shrinks a structure shows up as a percentage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtk
from vtk.util.numpy_support import vtk_to_numpy

VOLUME_TOLERANCE_PCT = 5.0  # enclosed vs mask volume; beyond this the mesh misrepresents the structure


@dataclass(frozen=True)
class MeshCheck:
    """What `check_mesh` found; `problems` says it in words, one line per problem."""

    triangles: int
    vertices: int
    boundary_edges: int         # used by one triangle: a hole
    non_manifold_edges: int     # used by three or more triangles
    misoriented_edges: int      # shared by two triangles that traverse it the same way
    components: int             # connected pieces
    euler_characteristic: int   # V - E + F; 2 per closed piece without handles
    volume_mm3: float           # enclosed by the mesh
    area_mm2: float
    mask_volume_mm3: float
    inward: bool = False        # the triangles face inwards (negative signed volume)

    @property
    def watertight(self) -> bool:
        """Closed and manifold, the same test as trimesh's `is_watertight`."""
        return self.triangles > 0 and self.boundary_edges == 0 and self.non_manifold_edges == 0

    @property
    def volume_difference_pct(self) -> float | None:
        if self.mask_volume_mm3 <= 0:
            return None
        return 100.0 * (self.volume_mm3 - self.mask_volume_mm3) / self.mask_volume_mm3

    @property
    def problems(self) -> list[str]:
        out = []
        if self.triangles == 0:
            return ["empty mesh: the label has no voxels"]
        if self.boundary_edges:
            out.append(f"{self.boundary_edges} open (boundary) edges: the surface has holes and is not watertight")
        if self.non_manifold_edges:
            out.append(f"{self.non_manifold_edges} non-manifold edges (shared by 3 or more triangles), often where "
                       "voxels touch only along an edge; some slicers reject this")
        if self.misoriented_edges:
            out.append(f"{self.misoriented_edges} edges between triangles facing opposite ways")
        if self.inward:
            out.append("triangles face inwards (negative enclosed volume)")
        if self.components > 1:
            out.append(f"{self.components} separate pieces (disconnected parts or inner cavities)")
        diff = self.volume_difference_pct
        if diff is not None and abs(diff) > VOLUME_TOLERANCE_PCT:
            out.append(f"enclosed volume {self.volume_mm3:.0f} mm3 differs from the mask volume "
                       f"{self.mask_volume_mm3:.0f} mm3 by {diff:+.1f}% (tolerance {VOLUME_TOLERANCE_PCT:g}%): "
                       "the structure is thin or small for this voxel size")
        return out

    def to_json(self) -> dict:
        diff = self.volume_difference_pct
        return {"triangles": self.triangles, "vertices": self.vertices, "surface_area_mm2": round(self.area_mm2, 2),
                "volume_mm3": round(self.volume_mm3, 2), "mask_volume_mm3": round(self.mask_volume_mm3, 2),
                "volume_difference_pct": None if diff is None else round(diff, 3), "watertight": self.watertight,
                "boundary_edges": self.boundary_edges, "non_manifold_edges": self.non_manifold_edges,
                "misoriented_edges": self.misoriented_edges, "components": self.components,
                "euler_characteristic": self.euler_characteristic, "problems": self.problems}


def triangle_array(polydata: vtk.vtkPolyData) -> np.ndarray:
    """(M, 3) vertex indices of a triangles-only polydata."""
    polys = polydata.GetPolys()
    if polys.GetNumberOfCells() == 0:
        return np.zeros((0, 3), np.int64)
    offsets = vtk_to_numpy(polys.GetOffsetsArray())
    if not np.all(np.diff(offsets) == 3):
        raise ValueError("mesh has polygons other than triangles; run vtkTriangleFilter first")
    return vtk_to_numpy(polys.GetConnectivityArray()).reshape(-1, 3).astype(np.int64)


def _edge_counts(polydata: vtk.vtkPolyData) -> tuple[int, int]:
    edges = vtk.vtkFeatureEdges()
    edges.SetInputData(polydata)
    edges.BoundaryEdgesOn()
    edges.FeatureEdgesOff()
    edges.ManifoldEdgesOff()
    edges.NonManifoldEdgesOff()
    edges.Update()
    boundary = edges.GetOutput().GetNumberOfCells()
    edges.BoundaryEdgesOff()
    edges.NonManifoldEdgesOn()
    edges.Update()
    return boundary, edges.GetOutput().GetNumberOfCells()


def _components(polydata: vtk.vtkPolyData) -> int:
    connectivity = vtk.vtkPolyDataConnectivityFilter()
    connectivity.SetInputData(polydata)
    connectivity.SetExtractionModeToAllRegions()
    connectivity.Update()
    return connectivity.GetNumberOfExtractedRegions()


def check_mesh(polydata: vtk.vtkPolyData, mask_volume_mm3: float) -> MeshCheck:
    """Check a triangle mesh (points in mm) against the volume of the mask it was made from."""
    triangles = triangle_array(polydata)
    if len(triangles) == 0:
        return MeshCheck(0, 0, 0, 0, 0, 0, 0, 0.0, 0.0, float(mask_volume_mm3))
    points = vtk_to_numpy(polydata.GetPoints().GetData()).astype(np.float64)
    boundary, non_manifold = _edge_counts(polydata)
    directed = np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]])
    undirected = np.sort(directed, axis=1)
    unique = np.unique(undirected, axis=0)
    # An edge used by exactly two triangles is consistently oriented when they traverse it in
    # opposite directions, i.e. its directed form occurs once each way.
    _, directed_counts = np.unique(directed, axis=0, return_counts=True)
    misoriented = int(np.sum(directed_counts == 2)) if len(directed_counts) else 0
    used = np.unique(triangles)
    euler = len(used) - len(unique) + len(triangles)
    mass = vtk.vtkMassProperties()
    mass.SetInputData(polydata)
    mass.Update()
    a, b, c = points[triangles[:, 0]], points[triangles[:, 1]], points[triangles[:, 2]]
    signed = float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)
    return MeshCheck(triangles=len(triangles), vertices=len(used), boundary_edges=boundary,
                     non_manifold_edges=non_manifold, misoriented_edges=misoriented,
                     components=_components(polydata), euler_characteristic=int(euler),
                     volume_mm3=float(mass.GetVolume()), area_mm2=float(mass.GetSurfaceArea()),
                     mask_volume_mm3=float(mask_volume_mm3), inward=signed < 0)
