"""Pictures for the validation page, drawn with matplotlib's Agg canvas (no Qt, no VTK): an axial
crop through a lesion or a detection with the reference outline (green: mask contour, box or
circle) and the detection's outline (red) and centre, in a lung window; and the FROC plot."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle

from viewer.core.volume import Volume
from viewer.validation.froc import FP_RATES, Froc
from viewer.validation.lesion import ReferenceLesion
from viewer.validation.matching import Finding

LUNG_WINDOW = (-1350.0, 150.0)
REFERENCE, DETECTION = "#2ecc40", "#ff4136"


def crop_picture(volume: Volume, centre_lps, path: Path, lesion: ReferenceLesion | None = None,
                 finding: Finding | None = None, size_mm: float = 40.0, title: str = "") -> Path:
    """Axial crop of `size_mm` around `centre_lps` (LPS mm) with the outlines, as a PNG."""
    i, j, k = np.rint(volume.lps_to_index(np.asarray(centre_lps, float))).astype(int)
    k = int(np.clip(k, 0, volume.shape[0] - 1))
    sx, sy = volume.spacing[0], volume.spacing[1]
    hi_, hj = int(np.ceil(size_mm / 2 / sx)), int(np.ceil(size_mm / 2 / sy))
    i0, i1 = max(i - hi_, 0), min(i + hi_ + 1, volume.shape[2])
    j0, j1 = max(j - hj, 0), min(j + hj + 1, volume.shape[1])
    figure = Figure(figsize=(2.2, 2.35), dpi=80)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0, 0, 1, 0.9 if title else 1.0))
    ax.set_axis_off()
    if i1 <= i0 or j1 <= j0:
        ax.text(0.5, 0.5, "outside the series", ha="center", va="center")
    else:
        plane = np.asarray(volume.voxels[k, j0:j1, i0:i1], float)
        extent = (i0 - 0.5, i1 - 0.5, j1 - 0.5, j0 - 0.5)
        ax.imshow(plane, cmap="gray", vmin=LUNG_WINDOW[0], vmax=LUNG_WINDOW[1], extent=extent, interpolation="nearest")
        if lesion is not None:
            _reference(ax, volume, lesion, k, (j0, j1, i0, i1))
        if finding is not None:
            _outline(ax, volume, finding.mask, k, (j0, j1, i0, i1), DETECTION)
            fi, fj, _ = volume.lps_to_index(np.asarray(finding.centre_lps_mm, float))
            ax.plot([fi], [fj], "+", color=DETECTION, markersize=9, markeredgewidth=1.5)
        ax.set_xlim(i0 - 0.5, i1 - 0.5)
        ax.set_ylim(j1 - 0.5, j0 - 0.5)
    if title:
        figure.text(0.5, 0.95, title, ha="center", va="center", fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return path


def _reference(ax, volume: Volume, lesion: ReferenceLesion, k: int, window) -> None:
    if lesion.mask is not None:
        _outline(ax, volume, lesion.mask, k, window, REFERENCE)
    elif lesion.boxes:
        for box in lesion.boxes:
            if box.k == k:
                ax.add_patch(Rectangle((box.i0 - 0.5, box.j0 - 0.5), box.i1 - box.i0 + 1, box.j1 - box.j0 + 1,
                                       fill=False, edgecolor=REFERENCE, linewidth=1.2))
    elif lesion.diameter_mm:
        ci, cj, ck = volume.lps_to_index(np.asarray(lesion.centre_lps_mm, float))
        # The ball's section on this slice, in voxels of the in-plane spacing.
        dz = (k - ck) * volume.spacing[2]
        r = np.sqrt(max((lesion.diameter_mm / 2) ** 2 - dz ** 2, 0.0))
        if r > 0:
            ax.add_patch(Circle((ci, cj), r / volume.spacing[0], fill=False, edgecolor=REFERENCE, linewidth=1.2,
                                linestyle="--"))


def _outline(ax, volume: Volume, mask: Volume | None, k: int, window, colour: str) -> None:
    """Contour of a sub-grid mask on slice k of the study, inside the crop window."""
    if mask is None:
        return
    j0, j1, i0, i1 = window
    offset = np.rint(volume.lps_to_index(mask.affine[:3, 3])).astype(int)  # (i, j, k) of the mask's first voxel
    mk = k - offset[2]
    if not 0 <= mk < mask.shape[0]:
        return
    plane = np.zeros((j1 - j0, i1 - i0), bool)
    src = np.asarray(mask.voxels[mk]) > 0
    sj0, si0 = offset[1] - j0, offset[0] - i0
    a0, b0 = max(sj0, 0), max(si0, 0)
    a1, b1 = min(sj0 + src.shape[0], plane.shape[0]), min(si0 + src.shape[1], plane.shape[1])
    if a1 <= a0 or b1 <= b0:
        return
    plane[a0:a1, b0:b1] = src[a0 - sj0:a1 - sj0, b0 - si0:b1 - si0]
    if plane.any() and not plane.all():
        ax.contour(np.arange(i0, i1), np.arange(j0, j1), plane.astype(float), levels=[0.5], colors=[colour],
                   linewidths=1.2)


def froc_png(curve: Froc, title: str) -> bytes:
    """The FROC plot (log false positives per scan, as LUNA16 draws it) as PNG bytes."""
    figure = Figure(figsize=(5.5, 3.8), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    fps = np.asarray(curve.false_positives_per_scan)
    sens = np.asarray(curve.sensitivity)
    xs = np.geomspace(FP_RATES[0] / 2, max(FP_RATES[-1], fps.max() if len(fps) else 1), 200)
    ax.plot(xs, [curve.sensitivity_at(x) for x in xs], color="#0074d9", label=f"FROC (CPM {curve.cpm:.3f})")
    ax.plot([r for r in FP_RATES], [curve.sensitivity_at(r) for r in FP_RATES], "o", color="#0074d9")
    shown = fps > 0
    ax.plot(fps[shown], sens[shown], ".", color="#aaaaaa", markersize=3, label="operating points")
    ax.set_xscale("log")
    ax.set_xticks(FP_RATES, [f"{r:g}" for r in FP_RATES])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("mean false positives per scan")
    ax.set_ylabel("sensitivity")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
