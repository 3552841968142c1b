"""Measurements against known geometry: lengths, angles, areas and HU statistics, stored and reloaded."""

from __future__ import annotations

import math

import numpy as np
import pytest

from viewer.core.measurements import Measurement
from viewer.core.volume import Volume
from viewer.store import Store


@pytest.fixture
def volume():
    """100 HU disc of radius 10 mm on -900 HU, 0.5 mm pixels, 2 mm slices, anisotropic on purpose."""
    z, y, x = np.mgrid[:10, :80, :80]
    xs, ys = x * 0.5 - 20, y * 0.5 - 20
    voxels = np.where(xs**2 + ys**2 <= 100, 100, -900).astype(np.int16)
    voxels[:, 40:, :] += 50 * (voxels[:, 40:, :] == 100)  # posterior half of the disc is 150 HU
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    affine[:3, 3] = (-20, -20, 0)
    return Volume(voxels, affine, unit="[hnsf'U]")


def values(m, volume=None):
    return {v.name: v for v in m.values(volume)}


def test_line_and_angle():
    line = Measurement("line", ((0, 0, 0), (3, 4, 12)))
    assert values(line)["length_mm"].value == pytest.approx(13.0)
    assert values(line)["length_mm"].unit == "mm" and values(line)["length_mm"].concept[0] == "410668003"
    angle = Measurement("angle", ((10, 0, 0), (0, 0, 0), (10, 10, 0)))
    assert values(angle)["angle_deg"].value == pytest.approx(45.0)


def test_ellipse_area_and_hu_statistics(volume):
    # A circle of radius 4 mm wholly inside the anterior (100 HU) half of the disc, at z = 4 mm.
    m = Measurement("ellipse", ((0, -4.5, 4), (4, -4.5, 4), (0, -0.5, 4)))
    v = values(m, volume)
    assert v["area_mm2"].value == pytest.approx(math.pi * 16, rel=1e-9)
    assert v["mean"].value == pytest.approx(100, abs=0.5) and v["sd"].value < 1
    assert v["mean"].unit == "[hnsf'U]"
    # Centred on the disc, radius 10 mm: half 100, half 150 HU -> mean 125, SD 25 (within sampling error).
    whole = values(Measurement("ellipse", ((0, 0, 4), (9.5, 0, 4), (0, 9.5, 4))), volume)
    assert whole["mean"].value == pytest.approx(125, abs=3) and whole["sd"].value == pytest.approx(25, abs=1)
    assert whole["min"].value == 100 and whole["max"].value == 150


def test_polygon_area_on_an_oblique_plane(volume):
    # A 6 x 8 mm rectangle tilted 30 degrees: area must not depend on the plane.
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    u, v = np.array([1, 0, 0]), np.array([0, c, s])
    corners = [tuple(a * 6 * u + b * 8 * v) for a, b in ((0, 0), (1, 0), (1, 1), (0, 1))]
    assert values(Measurement("polygon", tuple(corners)), volume)["area_mm2"].value == pytest.approx(48.0)


def test_bad_measurements_are_refused():
    with pytest.raises(ValueError, match="needs 2 points"):
        Measurement("line", ((0, 0, 0),))
    with pytest.raises(ValueError, match="unknown measurement kind"):
        Measurement("circle", ((0, 0, 0), (1, 1, 1)))
    with pytest.raises(ValueError, match="collinear"):
        Measurement("polygon", ((0, 0, 0), (1, 0, 0), (2, 0, 0))).values()


def test_measurements_are_saved_edited_and_deleted_per_series(tmp_path):
    with Store(tmp_path / "db.sqlite3") as store:
        a = Measurement("line", ((0, 0, 0), (10, 0, 0)), "long axis")
        b = Measurement("angle", ((1, 0, 0), (0, 0, 0), (0, 1, 0)))
        store.save_measurement("series-1", a)
        store.save_measurement("series-1", b)
        store.save_measurement("series-2", Measurement("line", ((0, 0, 0), (1, 0, 0))))
        assert [m.id for m in store.measurements("series-1")] == [a.id, b.id]
        edited = Measurement("line", ((0, 0, 0), (20, 0, 0)), "long axis", a.id)
        store.save_measurement("series-1", edited)
        assert store.measurements("series-1")[0] == edited
        store.delete_measurement(b.id)
        assert [m.id for m in store.measurements("series-1")] == [a.id]
    with Store(tmp_path / "db.sqlite3") as store:  # survives reopening
        assert store.measurements("series-1")[0].points[1] == (20.0, 0.0, 0.0)
