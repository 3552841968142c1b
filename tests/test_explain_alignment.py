"""Resolution and alignment of explanation maps: a classifier whose evidence is one known block of
its input (one cell of the explained layer) must get a map whose peak lands on that block within
one voxel, in LPS, on anisotropic and oblique study grids (the card's preprocessing resamples the
crop; the Heatmap carries its own affine). With padded pooling the cells are not where captum's
interpolation puts them (half-cell offsets), which the layer-geometry bookkeeping corrects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.dicom_factory import make_slice_dataset
from tests.onnx_factory import export
from viewer.dicom import load
from viewer.inference.explain import explain, upsample
from viewer.inference.explain_quality import in_mask, peak_lps, sphere
from viewer.inference.torch_twin import layer_grid, target_layer, torch_twin

torch.set_num_threads(1)

PRE = [{"name": "reorient", "to": "LPS"}, {"name": "resample", "spacing_mm": [1.0, 1.0, 1.0]},
       {"name": "window", "low": -1000, "high": 400}]
CELL = (5, 2, 3)  # (k, j, i) of the evidence cell on the 8x8x8 layer grid of a 32^3 input


class BlockNet(torch.nn.Module):
    """Evidence = one cell of the layer 'conv2' (stride 4): a mean filter keeps bright voxels, two
    poolings (plain 2x2x2, or 3x3x3 with padding 1, which centres cell o on voxel 4o instead of
    4o + 1.5), a 1x1x1 'conv2', then only the cell CELL reaches the logit (a fixed 0/1 weight)."""

    def __init__(self, padded: bool):
        super().__init__()
        self.conv1, self.relu1 = torch.nn.Conv3d(1, 1, 3, padding=1), torch.nn.ReLU()
        pool = (lambda: torch.nn.MaxPool3d(3, 2, 1)) if padded else (lambda: torch.nn.MaxPool3d(2))
        self.pool1, self.pool2 = pool(), pool()
        self.conv2, self.relu2 = torch.nn.Conv3d(1, 1, 1), torch.nn.ReLU()
        self.fc = torch.nn.Linear(1, 2)
        weight = torch.zeros(1, 1, 8, 8, 8)
        weight[(0, 0, *CELL)] = 1.0
        self.register_buffer("cell", weight)
        with torch.no_grad():
            self.conv1.weight[:] = 1.0 / 27
            self.conv1.bias[:] = -0.5
            self.conv2.weight[:] = 1.1
            self.conv2.bias[:] = 0.0
            self.fc.weight[:] = torch.tensor([[40.0], [-40.0]])
            self.fc.bias[:] = torch.tensor([-1.0, 1.0])

    def forward(self, x):
        f = self.relu2(self.conv2(self.pool2(self.pool1(self.relu1(self.conv1(x))))))
        return self.fc((f * self.cell).sum(dim=(2, 3, 4)))


def block_centre_index(padded: bool) -> np.ndarray:
    """(i, j, k) input voxel on which the evidence cell is centred."""
    scale, offset = 4.0, (0.0 if padded else 1.5)
    return scale * np.array(CELL[::-1], float) + offset


@pytest.fixture(scope="module", params=[False, True], ids=["plain-pooling", "padded-pooling"])
def block_model(request, tmp_path_factory):
    padded = request.param
    card = export(BlockNet(padded), torch.zeros(1, 1, 32, 32, 32), tmp_path_factory.mktemp("m") / f"block{int(padded)}",
                  {"task": "classification", "crop_mm": [32, 32, 32], "preprocessing": PRE,
                   "input": {"name": "image", "axes": "NCDHW", "spatial_size": [32, 32, 32]},
                   "output": {"name": "scores", "kind": "logits",
                              "labels": [{"value": 0, "name": "block"}, {"value": 1, "name": "none"}]},
                   "explain": {"target_layer": "/relu2/Relu"}}, dynamic=False)
    return card, padded


def write_study(folder, spheres, spacing=(0.7, 0.8), step=2.5, degrees=0.0, tilt=0.0, size_mm=80.0):
    """CT of -800 HU holding 100 HU spheres (LPS centre, radius), on a grid with `spacing` in-plane,
    `step` between slices, rows turned `degrees` about z and tilted `tilt` about x (oblique)."""
    from pydicom.uid import generate_uid

    a, b = np.radians(degrees), np.radians(tilt)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    normal = np.cross(row, col)
    nx, ny, nz = int(size_mm / spacing[0]), int(size_mm / spacing[1]), int(size_mm / step)
    origin = -(nx / 2 * spacing[0] * row + ny / 2 * spacing[1] * col + nz / 2 * step * normal)
    j, i = np.mgrid[:ny, :nx]
    uids = generate_uid(), generate_uid(), generate_uid()
    for k in range(nz):
        position = origin + k * step * normal
        lps = position + i[..., None] * spacing[0] * row + j[..., None] * spacing[1] * col
        hu = np.full((ny, nx), -800, np.int16)
        for centre, radius in spheres:
            hu[np.linalg.norm(lps - np.asarray(centre), axis=-1) <= radius] = 100
        ds = make_slice_dataset(hu + 1024, position, (*row, *col), spacing, study_uid=uids[0], series_uid=uids[1],
                                for_uid=uids[2], instance_number=k + 1)
        ds.save_as(folder / f"IM{k:04d}.dcm", enforce_file_format=True)
    return load(folder)


GRIDS = {"anisotropic": {"spacing": (0.7, 0.8), "step": 2.5},
         "oblique": {"spacing": (0.9, 0.75), "step": 1.6, "degrees": 25.0, "tilt": 12.0}}


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("method", ["hirescam", "layercam"])
def test_peak_lands_on_the_evidence_block_within_one_voxel(tmp_path, block_model, grid, method):
    card, padded = block_model
    block = np.array([6.0, -9.0, 4.0])  # LPS of the evidence block's centre in the study
    distractor = block + np.array([-11.0, 9.0, -6.0])  # just as bright, but the model ignores it
    volume = write_study(tmp_path, [(block, 3.0), (distractor, 3.0)], **GRIDS[grid])
    point = block - (block_centre_index(padded) - 16)  # crop voxel 16 is the one nearest the point
    heatmap = explain(volume, card, point, method=method, provider="cpu")
    assert heatmap.target.name == "block" and heatmap.probability > 0.9
    assert "layer geometry not known" not in heatmap.note
    # The crop's centre voxel is within 0.5 mm of the point, the map's peak within 0.5 voxel of the cell's centre.
    assert np.abs(peak_lps(heatmap) - block).max() <= 1.0, (peak_lps(heatmap), block)
    # gradient cell by cell: nothing on the distractor, which the logit does not read
    assert heatmap.values.voxels[index_of(heatmap, distractor)] == 0
    inside = heatmap.values.voxels > 0.5
    assert np.abs(np.argwhere(inside).mean(axis=0)[::-1] - block_centre_index(padded)).max() <= 0.5
    # Grad-CAM weighs each channel by its mean gradient, so it lights every bright place alike,
    # the distractor as much as the block: why the card's map is cell by cell.
    gradcam = explain(volume, card, point, method="gradcam", provider="cpu")
    assert gradcam.values.voxels[index_of(gradcam, distractor)] > 0.5


def index_of(heatmap, lps) -> tuple:
    return tuple(np.rint(heatmap.values.lps_to_index(lps)[::-1]).astype(int))


def test_layer_geometry_and_captum_interpolation_half_cell_offsets(block_model):
    """The cells' centres follow from the convolutions and poolings; captum's interpolation
    (align_corners=False) is right for plain pooling only: with padded pooling it puts the
    evidence 1.5 voxels off."""
    card, padded = block_model
    twin = torch_twin(card)
    name, _ = target_layer(twin, card)
    scale, offset = layer_grid(twin, name, 3)
    assert np.allclose(scale, 4) and np.allclose(offset, 0.0 if padded else 1.5)
    cam = np.zeros((8, 8, 8))
    cam[CELL] = 1.0
    aligned = np.unravel_index(np.argmax(upsample(cam, (32, 32, 32), (scale, offset))), (32, 32, 32))
    evenly = upsample(cam, (32, 32, 32))
    evenly_peak = np.argwhere(evenly == evenly.max()).mean(axis=0)
    expected = block_centre_index(padded)[::-1]
    assert np.abs(np.array(aligned) - expected).max() <= 0.5
    assert np.allclose(evenly_peak, 4 * np.array(CELL) + 1.5)  # captum's assumption, whatever the network
    assert (np.abs(evenly_peak - expected).max() == 1.5) == padded


def test_bundled_classifier_layer_geometry():
    from viewer.inference.registry import discover

    card = discover().get("radsight-demo-nodule-classifier")
    twin = torch_twin(card)
    grids = {name: layer_grid(twin, name, 3) for name in ("features/relu2/Relu", "features/relu3/Relu")}
    assert np.allclose(grids["features/relu2/Relu"][0], 2) and np.allclose(grids["features/relu2/Relu"][1], 0.5)
    assert np.allclose(grids["features/relu3/Relu"][0], 4) and np.allclose(grids["features/relu3/Relu"][1], 1.5)


def test_map_mostly_outside_the_finding_is_said(tmp_path, block_model):
    card, padded = block_model
    block = np.array([0.0, 0.0, 0.0])
    volume = write_study(tmp_path, [(block, 3.0)], size_mm=60.0)
    point = block - (block_centre_index(padded) - 16)
    on_block = explain(volume, card, point, method="hirescam", provider="cpu", finding=sphere(block, 8.0))
    assert on_block.mass_inside > 0.5 and "of the map's mass lies inside the finding" in on_block.note
    elsewhere = block + np.array([0.0, 12.0, 0.0])
    off = explain(volume, card, point, method="hirescam", provider="cpu", finding=sphere(elsewhere, 8.0))
    assert off.mass_inside < 0.05 and "most of the map lies outside the finding" in off.note
    mask = volume.with_voxels((volume.voxels > 0).astype(np.uint8))  # the block's sphere as a measured mask
    assert explain(volume, card, point, method="hirescam", provider="cpu", finding=in_mask(mask)).mass_inside > 0.5
