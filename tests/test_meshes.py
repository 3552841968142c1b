"""Label meshes: geometry in the patient frame, closed surfaces, volumes, and files that
independent readers (trimesh, pygltflib, the Khronos glTF validator) accept.

Tolerances: enclosed volume within 1 % of the mask volume (voxel count x voxel volume) on the
synthetic shapes and 5 % on every demo label; a sphere's surface within 0.5 mm of its radius on
average and its volume within 3 % of 4/3 pi r^3; mesh centroids within half a voxel of the mask
centroid in LPS.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pygltflib
import pytest
import trimesh
import vtk

from viewer.core.volume import Volume
from viewer.render.mesh_checks import check_mesh
from viewer.render.mesh_writers import write_meshes
from viewer.render.meshes import NODULE_COLOR, label_meshes, mesh_parts

RADIUS = 12.0
CENTRE = np.array([-31.0, 22.0, 57.0])


def rotation(ax: float, ay: float) -> np.ndarray:
    a, b = np.radians(ax), np.radians(ay)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rx


def oblique_grid(shape_zyx, spacing=(0.9, 1.2, 2.0), left_handed=False) -> np.ndarray:
    direction = rotation(25.0, -35.0)
    if left_handed:
        direction[:, 2] *= -1
    affine = np.eye(4)
    affine[:3, :3] = direction * np.asarray(spacing)
    nz, ny, nx = shape_zyx
    centre_index = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    affine[:3, 3] = CENTRE - affine[:3, :3] @ centre_index + np.array([0.7, -0.4, 0.3])  # centre off-grid
    return affine


def voxel_centres(volume: Volume) -> np.ndarray:
    k, j, i = np.indices(volume.shape)
    return volume.index_to_lps(np.stack([i, j, k], -1).reshape(-1, 3)).reshape(*volume.shape, 3)


def sphere_volume(left_handed=False) -> Volume:
    shape = (18, 30, 36)
    grid = Volume(np.zeros(shape, np.uint8), oblique_grid(shape, left_handed=left_handed))
    inside = np.linalg.norm(voxel_centres(grid) - CENTRE, axis=-1) <= RADIUS
    return grid.with_voxels(inside.astype(np.uint8) * 7)


def mask_centroid(volume: Volume, value: int) -> np.ndarray:
    k, j, i = np.nonzero(volume.voxels == value)
    return volume.index_to_lps(np.stack([i, j, k], -1).astype(float)).mean(axis=0)


def surface_centroid(mesh: trimesh.Trimesh) -> np.ndarray:
    return np.asarray(mesh.center_mass)  # centroid of the enclosed solid


@pytest.mark.parametrize("left_handed", [False, True])
def test_sphere_on_oblique_anisotropic_grid_lands_in_lps(left_handed):
    labels = sphere_volume(left_handed)
    voxel = min(labels.spacing)
    (mesh,) = label_meshes(labels, quality="standard")
    check = mesh.check
    assert check.watertight and check.misoriented_edges == 0 and not check.inward, check.problems
    assert check.components == 1 and check.euler_characteristic == 2
    assert abs(check.volume_difference_pct) < 1.0
    assert check.volume_mm3 == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.03)
    distances = np.linalg.norm(mesh.points - CENTRE, axis=1)
    assert abs(distances.mean() - RADIUS) < 0.5, distances.mean()
    assert distances.max() - distances.min() < 2.0 * max(labels.spacing)
    outward = np.einsum("ij,ij->i", mesh.normals, mesh.points - CENTRE)
    assert np.mean(outward > 0) > 0.99
    solid = trimesh.Trimesh(mesh.points, mesh.triangles, process=False)
    assert np.linalg.norm(surface_centroid(solid) - mask_centroid(labels, 7)) < 0.5 * voxel


def test_box_at_the_volume_edge_closes():
    shape = (10, 20, 24)
    affine = np.diag([1.5, 1.0, 2.5, 1.0])
    affine[:3, 3] = (-10.0, 5.0, -40.0)
    voxels = np.zeros(shape, np.uint8)
    voxels[0:6, 4:20, 0:10] = 3  # touches k = 0, j = last, i = 0
    labels = Volume(voxels, affine)
    (mesh,) = label_meshes(labels, quality="fine")
    assert mesh.check.watertight and mesh.check.components == 1, mesh.check.problems
    assert abs(mesh.check.volume_difference_pct) < 1.0
    assert mesh.check.volume_mm3 == pytest.approx(6 * 16 * 10 * 1.5 * 1.0 * 2.5, rel=0.01)
    # The faces lie about half a voxel beyond the outermost voxel centres (smoothing rounds the corners).
    lo, hi = mesh.points.min(axis=0), mesh.points.max(axis=0)
    expected_lo = np.array([-10.0 - 0.75, 5.0 + 4 - 0.5, -40.0 - 1.25])
    expected_hi = np.array([-10.0 + 9 * 1.5 + 0.75, 5.0 + 19 + 0.5, -40.0 + 5 * 2.5 + 1.25])
    assert np.all(np.abs(lo - expected_lo) < 1.0) and np.all(np.abs(hi - expected_hi) < 1.0), (lo, hi)


def two_part_labels() -> Volume:
    """A sphere ("nodule N1", value 7) and a box (value 2) on one oblique grid."""
    labels = sphere_volume()
    voxels = np.array(labels.voxels)
    voxels[2:8, 2:10, 2:12] = 2
    return labels.with_voxels(voxels)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    labels = two_part_labels()
    parts = mesh_parts([2, 7], {2: "chest wall block", 7: "nodule N1"})
    meshes = label_meshes(labels, parts, quality="draft")
    out = tmp_path_factory.mktemp("meshes")
    return labels, meshes, write_meshes(meshes, out, ["stl", "obj", "ply", "glb"]), out


def test_parts_are_named_and_the_nodule_highlighted(written):
    _, meshes, _, _ = written
    by_name = {m.part.name: m.part for m in meshes}
    assert by_name["nodule N1"].finding and by_name["nodule N1"].color == NODULE_COLOR
    assert not by_name["chest wall block"].finding
    assert np.linalg.norm(np.subtract(by_name["chest wall block"].color, NODULE_COLOR)) > 0.35


def test_stl_read_back_by_trimesh_is_watertight_with_the_mask_volume(written):
    labels, meshes, files, _ = written
    for mesh in meshes:
        path = files["by_label"][mesh.part.value]["stl"]
        with open(path, "rb") as f:
            header = f.read(80)
        assert mesh.part.name.encode() in header
        solid = trimesh.load(path, force="mesh")
        assert solid.is_watertight and solid.is_winding_consistent and solid.volume > 0
        assert solid.is_watertight == mesh.check.watertight
        assert len(solid.faces) == mesh.check.triangles
        assert solid.volume == pytest.approx(mesh.check.mask_volume_mm3, rel=0.01)
        assert np.linalg.norm(surface_centroid(solid) - mask_centroid(labels, mesh.part.value)) < 0.5 * min(labels.spacing)


def test_obj_groups_carry_names_and_mtl_colours(written):
    _, meshes, files, out = written
    scene = trimesh.load(out / "model.obj")
    assert set(scene.geometry) == {"chest_wall_block", "nodule_N1"}
    for mesh in meshes:
        geometry = scene.geometry[mesh.part.name.replace(" ", "_")]
        assert np.allclose(geometry.visual.material.diffuse[:3] / 255, mesh.part.color, atol=1 / 255)
        assert geometry.is_watertight
        assert geometry.volume == pytest.approx(mesh.check.mask_volume_mm3, rel=0.01)
    assert "model.mtl" in (out / "model.obj").read_text().splitlines()[1]


def test_ply_has_per_vertex_label_colours(written):
    _, meshes, _, out = written
    ply = trimesh.load(out / "model.ply", process=False)
    assert len(ply.vertices) == sum(len(m.points) for m in meshes)
    colours = {tuple(c) for c in np.asarray(ply.visual.vertex_colors)[:, :3]}
    assert colours == {tuple(int(round(255 * c)) for c in m.part.color) for m in meshes}
    first = len(meshes[0].points)
    assert np.all(np.asarray(ply.visual.vertex_colors)[:first, :3] == np.round(np.asarray(meshes[0].part.color) * 255))


def test_glb_is_structurally_valid(written):
    _, meshes, _, out = written
    gltf = pygltflib.GLTF2().load(str(out / "model.glb"))
    blob = gltf.binary_blob()
    assert gltf.asset.version == "2.0" and len(blob) == gltf.buffers[0].byteLength
    sizes = {5126: 4, 5125: 4}
    widths = {"VEC3": 3, "SCALAR": 1}
    named = {}
    for view in gltf.bufferViews:
        assert view.byteOffset % 4 == 0 and view.byteOffset + view.byteLength <= len(blob)
    for node in gltf.nodes[1:]:
        mesh = gltf.meshes[node.mesh]
        assert node.name and mesh.name == node.name
        primitive = mesh.primitives[0]
        material = gltf.materials[primitive.material]
        arrays = {}
        for key, index in (("POSITION", primitive.attributes.POSITION), ("NORMAL", primitive.attributes.NORMAL),
                           ("indices", primitive.indices)):
            acc = gltf.accessors[index]
            view = gltf.bufferViews[acc.bufferView]
            assert acc.count * widths[acc.type] * sizes[acc.componentType] == view.byteLength
            dtype = np.float32 if acc.componentType == 5126 else np.uint32
            arrays[key] = np.frombuffer(blob, dtype, acc.count * widths[acc.type], view.byteOffset).reshape(acc.count, -1)
            if acc.max:
                assert np.allclose(arrays[key].max(axis=0), acc.max) and np.allclose(arrays[key].min(axis=0), acc.min)
        assert gltf.accessors[primitive.attributes.POSITION].max
        assert arrays["indices"].max() < len(arrays["POSITION"]) and len(arrays["indices"]) % 3 == 0
        assert np.allclose(np.linalg.norm(arrays["NORMAL"], axis=1), 1.0, atol=1e-3)
        named[node.name] = (material.pbrMetallicRoughness.baseColorFactor, arrays["POSITION"])
    assert set(named) == {m.part.name for m in meshes}
    for mesh in meshes:
        colour, positions = named[mesh.part.name]
        assert np.allclose(colour[:3], mesh.part.color) and colour[3] == 1.0
        assert np.allclose(positions, mesh.points, atol=1e-3)  # LPS mm, exactly the mesh
    # The root turns LPS mm into glTF metres, superior up: the patient's head points +Y.
    root = np.array(gltf.nodes[0].matrix).reshape(4, 4).T
    assert np.allclose(root @ [0, 0, 1000, 0], [0, 1, 0, 0])


def _gltf_validator() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not installed (apt-get install nodejs npm; npm install -g gltf-validator)")
    root = subprocess.run([npm, "root", "-g"], capture_output=True, text=True, check=False).stdout.strip()
    if not root or not (shutil.os.path.isdir(f"{root}/gltf-validator")):
        pytest.skip("the Khronos glTF validator is not installed (npm install -g gltf-validator)")
    return node, root


@pytest.mark.external
def test_glb_passes_the_khronos_validator(written):
    node, root = _gltf_validator()
    _, _, _, out = written
    script = ("const v=require('gltf-validator');const fs=require('fs');"
              "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])))"
              ".then(r=>console.log(JSON.stringify(r.issues))).catch(e=>{console.error(e);process.exit(1)});")
    run = subprocess.run([node, "-e", script, str(out / "model.glb")], capture_output=True, text=True, check=False,
                         env={**shutil.os.environ, "NODE_PATH": root}, timeout=120)
    assert run.returncode == 0, run.stderr
    issues = json.loads(run.stdout)
    assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"]


def _without_cells(polydata: vtk.vtkPolyData, drop: list[int]) -> vtk.vtkPolyData:
    triangles = [[polydata.GetCell(c).GetPointId(n) for n in range(3)] for c in range(polydata.GetNumberOfCells())]
    cells = vtk.vtkCellArray()
    for n, tri in enumerate(triangles):
        if n not in drop:
            cells.InsertNextCell(3, tri)
    out = vtk.vtkPolyData()
    out.SetPoints(polydata.GetPoints())
    out.SetPolys(cells)
    return out


def test_checker_reports_a_holed_and_a_non_manifold_mesh(tmp_path):
    (mesh,) = label_meshes(sphere_volume(), quality="draft")
    holed = _without_cells(mesh.polydata, [0, 1, 2])
    check = check_mesh(holed, mesh.check.mask_volume_mm3)
    assert not check.watertight and check.boundary_edges >= 3
    assert any("open (boundary) edges" in p for p in check.problems)
    assert not trimesh.Trimesh(mesh.points, np.delete(mesh.triangles, [0, 1, 2], axis=0)).is_watertight
    # A fin: a new point joined to an existing edge makes that edge belong to three triangles.
    a, b, _ = mesh.triangles[0]
    points = vtk.vtkPoints()
    points.DeepCopy(mesh.polydata.GetPoints())
    tip = points.InsertNextPoint(*(mesh.points[a] + 5.0))
    cells = vtk.vtkCellArray()
    cells.DeepCopy(mesh.polydata.GetPolys())
    cells.InsertNextCell(3, [int(a), int(b), tip])
    fin = vtk.vtkPolyData()
    fin.SetPoints(points)
    fin.SetPolys(cells)
    check = check_mesh(fin, mesh.check.mask_volume_mm3)
    assert not check.watertight and check.non_manifold_edges >= 1
    assert any("non-manifold" in p for p in check.problems)


def test_label_volume_of_floats_is_refused():
    with pytest.raises(ValueError, match="integers"):
        label_meshes(Volume(np.zeros((4, 4, 4), np.float32), np.eye(4)))


@pytest.mark.slow
def test_demo_labels_give_closed_meshes_with_mask_volumes(tmp_path):
    from viewer.demo import generate_demo
    from viewer.dicom import load
    from viewer.render.mesh_export import read_label_file

    demo = generate_demo(tmp_path / "demo", preset="small", n_visits=1, seed=11)
    source = read_label_file(demo.visits[0].labels_path, None)
    truth = demo.ground_truth()["visits"][0]["nodules"]
    present = {n["label"] for n in truth if n["present"]}
    assert present <= source.findings
    meshes = label_meshes(source.labels, source.parts(), quality="draft")
    files = write_meshes(meshes, tmp_path / "out", ["stl"])
    labels = load(demo.visits[0].labels_path)
    assert {m.part.name for m in meshes} >= {"left lung", "right lung", "bone"} | {f"nodule {n['id']}" for n in truth
                                                                                    if n["present"]}
    for mesh in meshes:
        solid = trimesh.load(files["by_label"][mesh.part.value]["stl"], force="mesh")
        assert mesh.check.watertight and solid.is_watertight, (mesh.part.name, mesh.problems)
        assert solid.volume == pytest.approx(mesh.check.mask_volume_mm3, rel=0.05), mesh.part.name
        if mesh.part.finding:
            assert mesh.part.color == NODULE_COLOR
            assert np.linalg.norm(surface_centroid(solid) - mask_centroid(labels, mesh.part.value)) < \
                0.5 * min(labels.spacing), mesh.part.name


def test_coarser_quality_means_fewer_triangles_and_the_surface_stays_closed():
    """Decimation goes in checked steps: draft keeps well under half of fine's triangles on the
    sphere, standard lies between, and each mesh is still closed and holds the mask volume."""
    labels = sphere_volume()
    counts = {}
    for quality in ("fine", "standard", "draft"):
        (mesh,) = label_meshes(labels, quality=quality)
        assert mesh.check.watertight and mesh.check.components == 1, (quality, mesh.check.problems)
        assert abs(mesh.check.volume_difference_pct) < 1.0, quality
        counts[quality] = mesh.check.triangles
    assert counts["draft"] < counts["standard"] < counts["fine"], counts
    assert counts["draft"] <= 0.45 * counts["fine"], counts


def test_piece_by_piece_decimation_keeps_each_piece_closed_and_small_pieces_whole():
    """The fallback for many-piece labels: two large balls decimated on their own, a small one
    (under MIN_DECIMATED_TRIANGLES) kept as it is; the result is closed, in three pieces, with
    about the triangles asked for on the large ones."""
    from viewer.render.meshes import MIN_DECIMATED_TRIANGLES, _closed, _decimated_by_piece

    def ball(centre, radius, resolution):
        source = vtk.vtkSphereSource()
        source.SetCenter(*centre)
        source.SetRadius(radius)
        source.SetThetaResolution(resolution)
        source.SetPhiResolution(resolution)
        source.Update()
        return source.GetOutput()

    append = vtk.vtkAppendPolyData()
    for centre, resolution in (((0, 0, 0), 60), ((30, 0, 0), 60), ((0, 30, 0), 8)):
        append.AddInputData(ball(centre, 10.0, resolution))
    append.Update()
    clean = vtk.vtkCleanPolyData()
    clean.SetInputData(append.GetOutput())
    clean.Update()
    joined = clean.GetOutput()
    assert _closed(joined)
    small = ball((0, 30, 0), 10.0, 8).GetNumberOfPolys()
    assert small < MIN_DECIMATED_TRIANGLES
    result = _decimated_by_piece(joined, 0.5)
    assert _closed(result)
    large_before = joined.GetNumberOfPolys() - small
    large_after = result.GetNumberOfPolys() - small
    assert 0.45 * large_before <= large_after <= 0.56 * large_before, (large_before, large_after)
    connectivity = vtk.vtkPolyDataConnectivityFilter()
    connectivity.SetInputData(result)
    connectivity.SetExtractionModeToAllRegions()
    connectivity.Update()
    assert connectivity.GetNumberOfExtractedRegions() == 3
