"""Captions with leader lines in the 3-D view, their anchors on label surfaces, and the volume
rendering presets, checked on rendered pixels (offscreen) and on the demo's label volume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from viewer.core.errors import RadSightError
from viewer.core.volume import Volume
from viewer.render.annotations import Annotation, label_annotations, surface_anchor
from viewer.render.snapshot import Scene3D, render_3d
from viewer.render.volume_scene import VOLUME_PRESETS

SIZE = 200
CAPTION_RGB = np.array([255, 242, 153])  # the default caption colour (1, 0.95, 0.6)


def _block_volume() -> Volume:
    v = np.full((40, 40, 40), -1000, np.int16)
    v[10:30, 10:30, 24:34] = 1200  # patient left (high x): the screen's right in the front view
    return Volume(v, np.diag([4.0, 4.0, 4.0, 1.0]))


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 30


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max(), cols.min(), cols.max()


@pytest.mark.parametrize("spec, point, text", [
    ("1,2,3:Aorta", (1, 2, 3), "Aorta"),
    ("-14.5, 3 ,-40:Left lung: upper lobe ", (-14.5, 3, -40), "Left lung: upper lobe"),
])
def test_annotation_parses_point_and_text(spec, point, text):
    ann = Annotation.parse(spec)
    assert ann.point_lps == point and ann.text == text


@pytest.mark.parametrize("spec", ["1,2:Aorta", "1,2,3", "1,2,3:", "a,b,c:Aorta", "1,2,3,4:Aorta", ":Aorta",
                                  "nan,1,2:Aorta"])
def test_bad_annotation_says_what_form_is_needed(spec):
    with pytest.raises(RadSightError, match="X,Y,Z:Text") as info:
        Annotation.parse(spec)
    assert repr(spec) in str(info.value)


def test_caption_is_drawn_with_a_leader_to_its_point_on_a_dark_box():
    vol = _block_volume()
    anchor = (116.0, 40.0, 100.0)  # on the block's anterior face, above the centre
    plain = render_3d(vol, size=(SIZE, SIZE))
    scene = Scene3D(vol, annotations=[Annotation(anchor, "Left block")], font_size=16)
    for rgb in scene.views([(0.0, 0.0)], (SIZE, SIZE)):
        ax, ay = scene.captions._display_point(anchor)  # display: y up from the bottom
        dx, dy = scene.captions.captions[0].GetPosition()  # the box's lower left, from the anchor
        bw, bh = scene.captions.captions[0].GetPosition2()
    changed = _changed(rgb, plain)
    assert changed.sum() > 150  # the text, its box and the leader
    # The leader ends at the anchor's pixel.
    row, col = SIZE - 1 - int(round(ay)), int(round(ax))
    assert changed[max(row - 3, 0):row + 4, max(col - 3, 0):col + 4].any()
    # The box lies above the anchor (away from the centre), inside the picture (pushed left from
    # the right edge here), clear of the anchor.
    assert dy > 0 and bw > 40 and 14 < bh < 30
    left, bottom = int(round(ax + dx)), SIZE - 1 - int(round(ay + dy))
    right, top = int(round(ax + dx + bw)), SIZE - 1 - int(round(ay + dy + bh))
    assert 0 < left < right < SIZE and 0 < top < bottom < SIZE and bottom < row
    # Readable on anything: bright text on a dark background inside the box; the text is there.
    box = rgb[top + 2:bottom - 1, left + 2:right - 1]
    grey = box.astype(int).sum(axis=2)
    assert (grey < 120).mean() > 0.3 and (grey > 550).mean() > 0.05
    assert (np.abs(box.astype(int) - CAPTION_RGB).sum(axis=2) < 60).sum() > 20
    assert not changed[:, :SIZE // 2 - 20].any()  # nothing drawn on the far side


def test_larger_font_gives_a_larger_caption():
    vol = _block_volume()
    plain = render_3d(vol, size=(SIZE, SIZE))
    heights = []
    for size in (12, 24):
        rgb = render_3d(vol, size=(SIZE, SIZE), annotations=[Annotation((116.0, 40.0, 78.0), "Left")],
                        font_size=size)
        caption = _changed(rgb, plain) & (np.abs(rgb.astype(int) - CAPTION_RGB).sum(axis=2) < 60)
        top, bottom, left, right = _bbox(caption[:, SIZE // 2 + 30:])  # right of the block: the box
        heights.append(bottom - top + 1)
    assert heights[1] == pytest.approx(2 * heights[0], rel=0.25)


def test_surface_anchor_lies_on_the_surface_facing_away_from_the_centre():
    shape = (40, 40, 40)
    k, j, i = np.ogrid[:40, :40, :40]
    centre_kji = np.array([20, 20, 30])
    sphere = (k - 20) ** 2 + (j - 20) ** 2 + (i - 30) ** 2 <= 6 ** 2
    vol = Volume(np.zeros(shape, np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    point = np.array(surface_anchor(sphere, vol))
    centre = vol.index_to_lps(centre_kji[::-1])
    radius_mm = 6 * 2.0
    assert np.linalg.norm(point - centre) == pytest.approx(radius_mm, abs=2.0)  # one voxel
    outward = (point - centre) / np.linalg.norm(point - centre)
    assert outward[0] > 0.95  # the sphere sits at high x: its anchor is on its +x side
    with pytest.raises(ValueError, match="empty"):
        surface_anchor(np.zeros(shape, bool), vol)


def test_label_annotations_name_present_labels_and_refuse_missing_ones():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:8, 2:8, 2:8] = 1
    labels[12:18, 12:18, 12:18] = 3
    vol = Volume(labels, np.eye(4))
    anns = label_annotations(vol, {1: "liver", 2: "spleen", 3: "kidney"})
    assert [a.text for a in anns] == ["liver", "kidney"]  # spleen (2) is not in the volume
    for ann, value in zip(anns, (1, 3)):
        i, j, k = np.round(vol.lps_to_index(ann.point_lps)).astype(int)
        assert labels[k, j, i] == value
    with pytest.raises(RadSightError, match="label 2 is not in the label volume; values present: 1, 3"):
        label_annotations(vol, {2: "spleen"}, values=[2])
    with pytest.raises(RadSightError, match="label 3 has no name"):
        label_annotations(vol, {1: "liver"}, values=[3])


def test_every_preset_is_documented():
    assert {"ct-bone", "ct-lung", "ct-soft-tissue", "ct-vessels", "ct-skin", "mip", "mr-default"} <= set(VOLUME_PRESETS)
    for name, preset in VOLUME_PRESETS.items():
        assert len(preset.description) > 30, name


def test_presets_show_what_they_are_for():
    """A soft-tissue body (40 HU) in air with a contrast-filled vessel (300 HU) in front: ct-skin
    shows the body surface, ct-bone shows nothing of it, ct-vessels shows the vessel red."""
    v = np.full((40, 40, 40), -1000, np.int16)
    k, j, i = np.ogrid[:40, :40, :40]
    v[:, ((j - 20) ** 2 + (i - 20) ** 2 <= 14 ** 2)[0]] = 40
    v[:, 8:11, 18:23] = 300  # anterior vessel running head to foot
    vol = Volume(v, np.diag([3.0, 3.0, 3.0, 1.0]))
    body, vessel = (slice(90, 110), slice(78, 90)), (slice(90, 110), slice(97, 104))  # rows, columns
    skin, bone, vessels = (render_3d(vol, name, size=(SIZE, SIZE)).astype(float)
                           for name in ("ct-skin", "ct-bone", "ct-vessels"))
    assert skin[body].mean() > 100 and skin[body][..., 0].mean() > skin[body][..., 2].mean() + 20  # skin colour
    assert bone[body].mean() < 25 and vessels[body].mean() < 25  # 40 HU: clear in both
    red = vessels[vessel]
    assert red[..., 0].mean() > 80 and red[..., 0].mean() > 2 * red[..., 1].mean()
    assert bone[vessel][..., 0].mean() < 1.5 * bone[vessel][..., 1].mean()  # bone preset: not red


def test_mr_default_follows_the_data_scale():
    """MR has no fixed units: the same anatomy at 8 times the signal renders the same."""
    rng = np.random.default_rng(4)
    v = np.zeros((40, 40, 40), np.float32)
    v[8:32, 8:32, 8:32] = 300 + rng.normal(0, 10, (24, 24, 24))
    v[14:26, 14:26, 14:26] = 900
    a = render_3d(Volume(v, np.eye(4) * 3 + np.diag([0, 0, 0, -2])), "mr-default", size=(SIZE, SIZE))
    b = render_3d(Volume(v * 8, np.eye(4) * 3 + np.diag([0, 0, 0, -2])), "mr-default", size=(SIZE, SIZE))
    assert a.std() > 10
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0


@pytest.mark.slow
def test_demo_labels_are_captioned_from_the_command_line(tmp_path, capsys):
    """The demo's label names come from its ground_truth.json, found beside the labels file's folder."""
    from PIL import Image

    from viewer.cli import main
    from viewer.demo import generate_demo
    from viewer.dicom import load

    demo = generate_demo(tmp_path / "demo", preset="small", n_visits=1, seed=5)
    visit = demo.visits[0]
    common = ["render", str(visit.study_dir), "--view", "3d", "--size", "240", "--labels", str(visit.labels_path)]
    assert main([*common, "--out", str(tmp_path / "plain.png")]) == 0
    capsys.readouterr()
    assert main([*common, "--annotate-labels", "1,2", "--font-size", "14", "--out", str(tmp_path / "named.png"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["width"] == 240
    plain = np.asarray(Image.open(tmp_path / "plain.png").convert("RGB"))
    named = np.asarray(Image.open(tmp_path / "named.png").convert("RGB"))
    caption = _changed(named, plain) & (np.abs(named.astype(int) - CAPTION_RGB).sum(axis=2) < 60)
    # Left lung on the screen's right, right lung on the left (anterior view).
    assert caption[:, :80].sum() > 20 and caption[:, 160:].sum() > 20
    labels = load(visit.labels_path)
    names = {int(k): v for k, v in json.loads(demo.ground_truth_path.read_text())["labels"].items()}
    for ann in label_annotations(labels, names, [1, 2]):
        i, j, k = np.round(labels.lps_to_index(ann.point_lps)).astype(int)
        assert labels.voxels[k, j, i] == {"left lung": 1, "right lung": 2}[ann.text]
    code = main([*common, "--annotate-labels", "1,99", "--out", str(tmp_path / "bad.png")])
    assert code == 2 and "label 99 is not in the label volume" in capsys.readouterr().err
