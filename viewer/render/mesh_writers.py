"""Label meshes as files: STL per label (binary, for 3-D printing), one OBJ with a group per label
and an MTL of colours, one PLY with per-vertex colours, one binary glTF (GLB) with a named node,
mesh and PBR material per label.

Vertices stay in patient LPS millimetres in every format, so a file measured in any tool gives the
radiologist's numbers. The GLB adds one root node whose matrix turns LPS mm into glTF's metres
with +Y up (superior) and +Z towards the viewer (anterior), so model viewers show the patient
upright, facing them.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import vtk
from vtk.util.numpy_support import numpy_to_vtk

from viewer import __version__
from viewer.render.meshes import LabelMesh

FORMATS = ("stl", "obj", "ply", "glb")

# LPS mm -> glTF (metres; X = patient left, Y = superior, Z = anterior): a rotation, so triangle
# winding and outward normals survive.
LPS_TO_GLTF = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float) @ np.diag([1e-3] * 3 + [1])


def slug(name: str) -> str:
    """A file- and OBJ-safe form of a label name ("nodule N1" -> "nodule_N1")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "label"


def _nonempty(meshes: Sequence[LabelMesh]) -> list[LabelMesh]:
    return [m for m in meshes if m.check.triangles > 0]


def write_stl(mesh: LabelMesh, path: Path | str) -> Path:
    """Binary STL in mm; the 80-byte header names the part (a label name, never patient data)."""
    path = Path(path)
    writer = vtk.vtkSTLWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(mesh.polydata)
    writer.SetFileTypeToBinary()
    writer.SetHeader(f"RadSight {__version__} {mesh.part.name} (LPS mm)"[:79])
    writer.Write()
    if not path.is_file():
        raise OSError(f"{path}: STL not written")
    return path


def write_obj(meshes: Sequence[LabelMesh], path: Path | str) -> tuple[Path, Path]:
    """One OBJ with an `o`/`g` group and material per label, and its MTL (Kd = the label colour).

    Written by hand: vtkOBJWriter writes one polydata without groups or materials, and
    vtkOBJExporter needs an OpenGL render window; the format is a few lines of text."""
    path = Path(path)
    mtl = path.with_suffix(".mtl")
    obj_lines = [f"# RadSight {__version__} label meshes, LPS millimetres", f"mtllib {mtl.name}"]
    mtl_lines = [f"# RadSight {__version__} label colours"]
    base = 1
    for mesh in _nonempty(meshes):
        name = slug(mesh.part.name)
        r, g, b = mesh.part.color
        mtl_lines += [f"newmtl {name}", f"Kd {r:.4f} {g:.4f} {b:.4f}", "Ka 0.1 0.1 0.1", "Ks 0.2 0.2 0.2",
                      "Ns 20", "d 1.0", "illum 2", ""]
        points, normals, triangles = mesh.points, mesh.normals, mesh.triangles + base
        obj_lines += [f"o {name}", f"g {name}", f"usemtl {name}"]
        obj_lines += [f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in points]
        obj_lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in normals]
        obj_lines += [f"f {a}//{a} {b}//{b} {c}//{c}" for a, b, c in triangles]
        base += len(points)
    path.write_text("\n".join(obj_lines) + "\n", encoding="ascii")
    mtl.write_text("\n".join(mtl_lines) + "\n", encoding="ascii")
    return path, mtl


def write_ply(meshes: Sequence[LabelMesh], path: Path | str) -> Path:
    """All labels in one binary PLY, each vertex coloured with its label's colour (vtkPLYWriter)."""
    path = Path(path)
    append = vtk.vtkAppendPolyData()
    for mesh in _nonempty(meshes):
        coloured = vtk.vtkPolyData()
        coloured.ShallowCopy(mesh.polydata)
        rgb = np.tile(np.round(np.asarray(mesh.part.color) * 255).astype(np.uint8), (coloured.GetNumberOfPoints(), 1))
        colours = numpy_to_vtk(rgb, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR)
        colours.SetName("RGB")
        coloured.GetPointData().AddArray(colours)
        append.AddInputData(coloured)
    append.Update()
    writer = vtk.vtkPLYWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(append.GetOutput())
    writer.SetFileTypeToBinary()
    writer.SetArrayName("RGB")
    writer.SetColorModeToDefault()
    writer.AddComment(f"RadSight {__version__} label meshes, LPS millimetres")
    writer.Write()
    if not path.is_file():
        raise OSError(f"{path}: PLY not written")
    return path


def _align4(data: bytes, pad: bytes = b"\0") -> bytes:
    return data + pad * (-len(data) % 4)


def write_glb(meshes: Sequence[LabelMesh], path: Path | str) -> Path:
    """Binary glTF 2.0: per label a node and mesh named after it with a PBR material whose
    baseColorFactor is the label colour; POSITION (LPS mm, with min/max), NORMAL, uint32 indices.

    Written by hand with numpy and json: vtkGLTFExporter exports a render window's scene, which
    needs an OpenGL context on a headless machine and does not carry our label names; GLB is a
    small, fully specified container (a 12-byte header, a JSON chunk and a BIN chunk)."""
    path = Path(path)
    blob = bytearray()
    gltf: dict = {"asset": {"version": "2.0", "generator": f"RadSight {__version__}"},
                  "scene": 0, "scenes": [{"name": "label meshes", "nodes": [0]}],
                  "nodes": [{"name": "patient (LPS mm)", "matrix": LPS_TO_GLTF.T.reshape(-1).tolist(), "children": []}],
                  "meshes": [], "materials": [], "accessors": [], "bufferViews": []}

    def view(array: np.ndarray, target: int) -> int:
        data = np.ascontiguousarray(array).tobytes()
        gltf["bufferViews"].append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data), "target": target})
        blob.extend(_align4(data))
        return len(gltf["bufferViews"]) - 1

    def accessor(array: np.ndarray, component: int, kind: str, target: int, bounds: bool = False) -> int:
        item = {"bufferView": view(array, target), "componentType": component, "count": int(len(array)), "type": kind}
        if bounds:
            item["min"] = array.min(axis=0).astype(float).tolist()
            item["max"] = array.max(axis=0).astype(float).tolist()
        gltf["accessors"].append(item)
        return len(gltf["accessors"]) - 1

    for mesh in _nonempty(meshes):
        points = mesh.points.astype(np.float32)
        normals = mesh.normals.astype(np.float32)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        indices = mesh.triangles.astype(np.uint32).reshape(-1)
        position = accessor(points, 5126, "VEC3", 34962, bounds=True)  # FLOAT, ARRAY_BUFFER
        normal = accessor(normals, 5126, "VEC3", 34962)
        index = accessor(indices, 5125, "SCALAR", 34963)  # UNSIGNED_INT, ELEMENT_ARRAY_BUFFER
        gltf["accessors"][index]["min"] = [int(indices.min())]
        gltf["accessors"][index]["max"] = [int(indices.max())]
        material = len(gltf["materials"])
        gltf["materials"].append({"name": mesh.part.name, "doubleSided": False, "pbrMetallicRoughness": {
            "baseColorFactor": [*map(float, mesh.part.color), 1.0], "metallicFactor": 0.0, "roughnessFactor": 0.6}})
        gltf["meshes"].append({"name": mesh.part.name, "primitives": [{
            "attributes": {"POSITION": position, "NORMAL": normal}, "indices": index, "material": material, "mode": 4}]})
        gltf["nodes"].append({"name": mesh.part.name, "mesh": len(gltf["meshes"]) - 1,
                              "extras": {"label_value": mesh.part.value, "finding": mesh.part.finding}})
        gltf["nodes"][0]["children"].append(len(gltf["nodes"]) - 1)
    if not gltf["meshes"]:
        raise ValueError("no non-empty meshes to write")
    gltf["buffers"] = [{"byteLength": len(blob)}]
    text = _align4(json.dumps(gltf, separators=(",", ":")).encode("utf-8"), b" ")
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(blob), 0x004E4942) + bytes(blob)
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return path


def write_meshes(meshes: Sequence[LabelMesh], out_dir: Path | str, formats: Sequence[str],
                 stem: str = "model") -> dict:
    """Write `formats` into `out_dir`: {"files": [paths], "by_label": {value: {format: path}}}."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown mesh format {unknown[0]!r}; use {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meshes = _nonempty(meshes)
    files: list[Path] = []
    by_label: dict[int, dict[str, str]] = {m.part.value: {} for m in meshes}
    for fmt in dict.fromkeys(formats):
        if fmt == "stl":
            for mesh in meshes:
                p = write_stl(mesh, out / f"{stem}-{mesh.part.value:03d}-{slug(mesh.part.name)}.stl")
                files.append(p)
                by_label[mesh.part.value]["stl"] = str(p)
            continue
        if fmt == "obj":
            obj, mtl = write_obj(meshes, out / f"{stem}.obj")
            files += [obj, mtl]
            written = obj
        elif fmt == "ply":
            written = write_ply(meshes, out / f"{stem}.ply")
            files.append(written)
        else:
            written = write_glb(meshes, out / f"{stem}.glb")
            files.append(written)
        for mesh in meshes:
            by_label[mesh.part.value][fmt] = str(written)
    return {"files": [str(p) for p in files], "by_label": by_label}
