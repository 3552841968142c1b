"""Turntable animations and teaching stills of the 3-D view, rendered offscreen and read back.

The phantom is a small CT-like volume with three bone blocks placed so every view differs: a
tall one anterior on the patient's right, a short one posterior on the left, and a thin one
superior in the middle. Rendered frames are compared with stills from render_3d; files are
read back with imageio (GIF, Pillow) and imageio-ffmpeg's ffmpeg (MP4).
"""

from __future__ import annotations

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from viewer.cli import main
from viewer.core.volume import Volume
from viewer.render.snapshot import Scene3D, render_3d
from viewer.render.turntable import render_turntable, turntable_angles

SIZE = 160
FRAMES = 12
SPACING = 4.0  # mm; the block is 160 mm wide like a small chest
SHAPE = (40, 40, 40)  # z, y, x


def _phantom() -> Volume:
    v = np.full(SHAPE, -1000, np.int16)
    v[8:32, 4:14, 4:14] = 1200     # anterior (low y), patient right (low x), tall
    v[14:26, 26:36, 26:36] = 1200  # posterior (high y), patient left (high x), short
    v[34:38, 18:22, 16:24] = 1200  # superior, central
    affine = np.diag([SPACING, SPACING, SPACING, 1.0])
    affine[:3, 3] = (-78.0, -78.0, -78.0)  # the centre of the grid at LPS (0, 0, 0)
    return Volume(v, affine, unit="[hnsf'U]")


@pytest.fixture(scope="module")
def phantom() -> Volume:
    return _phantom()


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    import SimpleITK as sitk

    vol = _phantom()
    image = sitk.GetImageFromArray(vol.voxels)
    image.SetSpacing((SPACING,) * 3)
    image.SetOrigin(tuple(float(v) for v in vol.origin))
    path = tmp_path_factory.mktemp("tt") / "phantom.nii.gz"
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def frames(phantom):
    scene = Scene3D(phantom, "ct-bone")
    return list(scene.views(turntable_angles(FRAMES), (SIZE, SIZE)))


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_angles_are_equal_steps_round_the_long_axis():
    angles = turntable_angles(8, elevation=20, start_azimuth=10)
    assert [a for a, _ in angles] == [10 + 45 * k for k in range(8)]
    assert {e for _, e in angles} == {20}
    assert (angles[-1][0] - angles[0][0]) % 360 != 0  # last frame is not the first again


def test_frames_match_stills_at_their_azimuth_and_differ_from_each_other(phantom, frames):
    assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3)
    # Frame 0 is the anterior still, frame N/4 the still turned by 90 degrees (same renderer,
    # same sampling: equal up to a grey level or two of ray-casting noise).
    assert _diff(frames[0], render_3d(phantom, "ct-bone", size=(SIZE, SIZE))) < 1.0
    assert _diff(frames[FRAMES // 4], render_3d(phantom, "ct-bone", azimuth=90, size=(SIZE, SIZE))) < 1.0
    for k in range(FRAMES):
        assert frames[k].std() > 5, f"frame {k} is blank"
        assert _diff(frames[k], frames[(k + 1) % FRAMES]) > 1.0, f"frames {k} and {k + 1} are the same"
    # Half a turn mirrors the anterior view left-right (orthographic-ish: silhouettes match).
    front = frames[0].sum(axis=2) > 150
    back = frames[FRAMES // 2].sum(axis=2) > 150
    overlap = (front & back[:, ::-1]).sum() / max(front.sum(), 1)
    assert overlap > 0.6


def test_gif_has_the_frames_size_and_pictures(phantom, frames, tmp_path):
    result = render_turntable(Scene3D(phantom, "ct-bone"), tmp_path / "turn.gif", FRAMES, 8, size=(SIZE, SIZE))
    assert result.to_json() == {"out": str(tmp_path / "turn.gif"), "frames": FRAMES, "fps": 8.0,
                                "width": SIZE, "height": SIZE, "format": "gif"}
    back = iio.imread(tmp_path / "turn.gif", index=None)
    assert back.shape[:3] == (FRAMES, SIZE, SIZE)
    # 256 colours a frame: within a few grey levels of the rendered frames.
    for k in (0, FRAMES // 4, FRAMES - 1):
        assert _diff(back[k][..., :3], frames[k]) < 4.0
    meta = iio.immeta(tmp_path / "turn.gif", index=0)
    assert meta["duration"] == pytest.approx(1000 / 8, abs=10)  # GIF delays are in 10 ms steps
    assert not list(tmp_path.glob(".*partial*"))


def test_mp4_is_h264_yuv420p_with_even_sides(phantom, frames, tmp_path):
    out = tmp_path / "turn.mp4"
    result = render_turntable(Scene3D(phantom, "ct-bone"), out, FRAMES, 6, size=(SIZE - 1, SIZE))
    assert (result.width, result.height, result.format) == (SIZE, SIZE, "mp4")  # odd width grown by 1
    n, secs = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert n == FRAMES and secs == pytest.approx(FRAMES / 6, abs=0.2)
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = reader.__next__()
    assert tuple(meta["size"]) == (SIZE, SIZE) and meta["fps"] == pytest.approx(6)
    assert "h264" in meta["codec"] and "yuv420p" in meta["pix_fmt"]
    decoded = [np.frombuffer(f, np.uint8).reshape(SIZE, SIZE, 3) for f in reader]
    assert len(decoded) == FRAMES
    # Lossy (chroma at half resolution): close to the renders, and each frame its own.
    assert _diff(decoded[0], frames[0]) < 4.0
    assert _diff(decoded[FRAMES // 4], frames[FRAMES // 4]) < 4.0
    assert _diff(decoded[0], frames[FRAMES // 4]) > 2 * _diff(decoded[0], frames[0])


def test_clip_plane_removes_the_anterior_half(phantom):
    """The anterior block (patient right: screen left in the front view) goes; the posterior one stays."""
    full = render_3d(phantom, "ct-bone", size=(SIZE, SIZE))
    cut = render_3d(phantom, "ct-bone", size=(SIZE, SIZE), clip_planes=[((0, 0, 0), (0, 1, 0))])
    bright = lambda rgb: rgb.sum(axis=2) > 150  # noqa: E731
    left, right = slice(0, SIZE // 2), slice(SIZE // 2, SIZE)
    assert bright(full)[:, left].sum() > 300 and bright(full)[:, right].sum() > 100
    assert bright(cut)[:, left].sum() < 0.02 * bright(full)[:, left].sum()
    assert bright(cut)[:, right].sum() > 0.8 * bright(full)[:, right].sum()
    # The opposite normal keeps the anterior half instead.
    front_only = render_3d(phantom, "ct-bone", size=(SIZE, SIZE), clip_planes=[((0, 0, 0), (0, -1, 0))])
    assert bright(front_only)[:, left].sum() > 0.8 * bright(full)[:, left].sum()
    assert bright(front_only)[:, right].sum() < 0.5 * bright(full)[:, right].sum()


def test_cli_turntable_gif_with_json_and_progress(phantom_file, tmp_path, capsys):
    import json

    out = tmp_path / "cli.gif"
    code = main(["render", str(phantom_file), "--view", "3d", "--turntable", "--frames", "6", "--fps", "5",
                 "--size", "96", "--elevation", "15", "--annotate=-40,-60,0:Right block",
                 "--clip-plane", "0,50,0,0,-1,0", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads(captured.out)
    assert data == {"out": str(out), "frames": 6, "fps": 5.0, "width": 96, "height": 96, "format": "gif"}
    assert [line for line in captured.err.splitlines() if line.startswith("frame")] == [f"frame {k}/6" for k in range(1, 7)]
    assert iio.imread(out, index=None).shape[:3] == (6, 96, 96)


@pytest.mark.parametrize("argv, words", [
    (["--turntable", "--out", "x.avi"], [".avi", ".mp4", ".gif"]),
    (["--out", "x.mp4"], ["--turntable", ".png"]),
    (["--annotate", "1,2:Label", "--out", "x.png"], ["--annotate", "X,Y,Z:Text", "'1,2:Label'"]),
    (["--annotate", "1,2,3:", "--out", "x.png"], ["--annotate", "caption"]),
    (["--clip-plane", "0,0,0,0,0,0", "--out", "x.png"], ["normal", "non-zero"]),
    (["--clip-plane", "0,0,0,1", "--out", "x.png"], ["--clip-plane", "X,Y,Z,NX,NY,NZ"]),
    (["--size", "9000", "--out", "x.png"], ["9000", "8192"]),
    (["--size", "300", "--scale", "40", "--out", "x.png"], ["12000", "8192"]),
    (["--turntable", "--frames", "1", "--out", "x.gif"], ["at least 2 frames"]),
    (["--turntable", "--elevation", "90", "--out", "x.gif"], ["elevation", "90"]),
    (["--annotate-labels", "--out", "x.png"], ["--labels"]),
])
def test_cli_bad_input_is_one_line_naming_the_problem(phantom_file, tmp_path, capsys, argv, words):
    argv = [a.replace("x.", str(tmp_path / "x.")) for a in argv]
    code = main(["render", str(phantom_file), "--view", "3d", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("radsight render: error:")
    for word in words:
        assert word in err, err
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.slow
def test_high_resolution_still_keeps_the_framing(phantom_file, tmp_path, capsys):
    """--size 400 --scale 5 is a 2000 px picture of the same view as --size 400 (captions included)."""
    from PIL import Image

    small, big = tmp_path / "small.png", tmp_path / "big.png"
    common = ["render", str(phantom_file), "--view", "3d", "--annotate", "40,40,0:Posterior block"]
    assert main([*common, "--size", "400", "--out", str(small)]) == 0
    assert main([*common, "--size", "400", "--scale", "5", "--out", str(big), "--json"]) == 0
    assert '"width": 2000' in capsys.readouterr().out
    a = np.asarray(Image.open(small).convert("RGB"))
    b = np.asarray(Image.open(big).convert("RGB"))
    assert a.shape == (400, 400, 3) and b.shape == (2000, 2000, 3)
    shrunk = b.reshape(400, 5, 400, 5, 3).mean(axis=(1, 3))
    assert _diff(shrunk, a) < 6.0  # same picture, sharper; the caption enlarged with it
