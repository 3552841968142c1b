"""Turntable animations of the 3-D view for teaching and patient consultations: the camera goes
once round the patient's long (S-I) axis in equal steps and the frames become an MP4 or a GIF.

Frame k is the still at azimuth start + 360 k / N (so the last frame is one step short of the
first and the loop plays without a repeated frame). All frames come from one scene in one
offscreen window. MP4 is H.264 in yuv420p (what browsers, PowerPoint and phones play) through
imageio-ffmpeg's bundled ffmpeg; yuv420p needs even sides, so an odd side grows by one pixel.
GIF goes through imageio's Pillow plugin (256 colours a frame; delays in 10 ms steps).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from viewer.render.snapshot import Scene3D

FORMATS = {".mp4": "MP4 (H.264, yuv420p)", ".gif": "animated GIF"}


@dataclass(frozen=True)
class TurntableResult:
    out: Path
    frames: int
    fps: float
    width: int
    height: int
    format: str

    def to_json(self) -> dict:
        return {"out": str(self.out), "frames": self.frames, "fps": self.fps, "width": self.width,
                "height": self.height, "format": self.format}


def animation_format(path: Path | str) -> str:
    """"mp4" or "gif" from the file name; anything else is refused with the list."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        supported = ", ".join(f"{ext} ({what})" for ext, what in FORMATS.items())
        raise ValueError(f"{path}: cannot write a turntable as {suffix or 'a file without extension'}; "
                         f"supported: {supported}")
    return suffix[1:]


def turntable_angles(frames: int, elevation: float = 0.0, start_azimuth: float = 0.0) -> list[tuple[float, float]]:
    """(azimuth, elevation) of each frame: N equal steps of 360/N degrees, last != first."""
    if frames < 2:
        raise ValueError(f"a turntable needs at least 2 frames; got {frames}")
    if not -90 < elevation < 90:
        raise ValueError(f"turntable elevation {elevation} degrees is outside (-90, 90): at the pole the "
                         "long axis points at the camera and there is nothing to turn")
    return [(start_azimuth + 360.0 * k / frames, float(elevation)) for k in range(frames)]


def write_frames(frames: Iterable[np.ndarray], out: Path | str, fps: float, size: tuple[int, int]) -> Path:
    """Write RGB frames of `size` (width, height) to `out` (.mp4 or .gif). The file appears only
    when complete (written beside it under a temporary name, then renamed)."""
    out = Path(out)
    kind = animation_format(out)
    if not fps > 0:
        raise ValueError(f"frames per second must be positive; got {fps}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        if kind == "mp4":
            _write_mp4(frames, partial, fps, size)
        else:
            _write_gif(frames, partial, fps)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def _write_mp4(frames: Iterable[np.ndarray], path: Path, fps: float, size: tuple[int, int]) -> None:
    import imageio_ffmpeg

    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs even sides; got {width} x {height}")
    # macro_block_size=1: the size is already even, so no rescaling to multiples of 16.
    writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264",
                                         pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=8,
                                         macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> None:
    import imageio.v3 as iio

    stack = np.stack(list(frames))
    iio.imwrite(path, stack, extension=".gif", plugin="pillow", duration=1000.0 / fps, loop=0)


def render_turntable(scene: Scene3D, out: Path | str, frames: int = 36, fps: float = 12.0, elevation: float = 0.0,
                     size: tuple[int, int] = (512, 512), start_azimuth: float = 0.0,
                     progress: Callable[[int, int], None] | None = None) -> TurntableResult:
    """Render the turntable of `scene` and write it to `out`; `progress(k, N)` after frame k."""
    kind = animation_format(out)
    angles = turntable_angles(frames, elevation, start_azimuth)
    width, height = size
    if kind == "mp4":
        width, height = width + width % 2, height + height % 2

    def counted():
        for k, rgb in enumerate(scene.views(angles, (width, height)), start=1):
            if progress is not None:
                progress(k, len(angles))
            yield rgb

    path = write_frames(counted(), out, fps, (width, height))
    return TurntableResult(path, len(angles), float(fps), width, height, kind)
