"""Turn the phantom into CT numbers and labels, one slab of slices at a time.

Painter's model: each structure, in anatomical order, blends its HU into the slab with its
occupancy, occ = clip(0.5 - d / w, 0, 1), where d is the signed distance and w the voxel's mean
size, which is a fair partial-volume model for surfaces. Tubes thinner than a voxel are further
scaled by 2r / w so that their integrated density stays about right. Labels follow majority
occupancy (occ >= 0.5), the later structure winning.

Speed comes from evaluating each structure only inside its bounding box, computing coordinates
by broadcasting 1-D axes, and measuring tubes in the scanner frame (distances survive the rigid
motion), so a 384 x 384 x 200 visit renders in a few seconds.
"""

from __future__ import annotations

import numpy as np

from viewer.demo import anatomy as A
from viewer.demo.grid import RigidMotion, ScanGrid
from viewer.demo.phantom import Phantom
from viewer.demo.shapes import Capsules

NOISE_SIGMA_HU = 14.0
# Smoothing each axis with [1, 2, 1] / 4 keeps sqrt(3/8) of the standard deviation per axis.
_RAW_NOISE_SIGMA = NOISE_SIGMA_HU / 0.375


def occupancy(d, width: float):
    occ = 0.5 - d * (1.0 / width)
    return np.clip(occ, 0.0, 1.0, out=occ if isinstance(occ, np.ndarray) else None)


class _Slab:
    """Slices [k0, k1) of the grid for one visit, with boxes and coordinates on demand."""

    def __init__(self, grid: ScanGrid, motion: RigidMotion, k0: int, k1: int):
        self.grid, self.k0, self.k1 = grid, k0, k1
        self.rotation = motion.rotation.astype(np.float64)
        self.translation = motion.translation
        self.width = grid.ramp_width_mm
        self.axes = [grid.axis_mm(0).astype(np.float32), grid.axis_mm(1).astype(np.float32),
                     grid.axis_mm(2, k0, k1).astype(np.float32)]
        self.shape = (k1 - k0, grid.rows, grid.cols)
        self.hu = np.full(self.shape, A.HU_AIR, dtype=np.float32)
        self.labels = np.zeros(self.shape, dtype=np.uint8)
        self.full = (slice(0, k1 - k0), slice(0, grid.rows), slice(0, grid.cols))
        lo = np.array([self.axes[0][0], self.axes[1][0], self.axes[2][0]], dtype=float)
        hi = np.array([self.axes[0][-1], self.axes[1][-1], self.axes[2][-1]], dtype=float)
        corners = self._corners(np.stack([lo, hi]))
        anat = (corners - self.translation) @ self.rotation  # R^T (p - t), row-wise
        self.anatomy_bounds = np.stack([anat.min(axis=0), anat.max(axis=0)])

    @staticmethod
    def _corners(bounds: np.ndarray) -> np.ndarray:
        return np.array([[bounds[i, 0], bounds[j, 1], bounds[k, 2]]
                         for i in (0, 1) for j in (0, 1) for k in (0, 1)])

    def box_scanner(self, bounds: np.ndarray):
        """Slab-relative index box for a scanner-frame box (2 x 3), or None if it misses."""
        i0, i1 = self.grid.index_range(0, bounds[0, 0], bounds[1, 0])
        j0, j1 = self.grid.index_range(1, bounds[0, 1], bounds[1, 1])
        k0, k1 = self.grid.index_range(2, bounds[0, 2], bounds[1, 2])
        k0, k1 = max(k0, self.k0) - self.k0, min(k1, self.k1) - self.k0
        if i1 <= i0 or j1 <= j0 or k1 <= k0:
            return None
        return slice(k0, k1), slice(j0, j1), slice(i0, i1)

    def box_anatomy(self, bounds: np.ndarray, margin: float = 0.0):
        """Index box for an anatomy-frame box, grown by the ramp width and `margin`."""
        bounds = np.asarray(bounds, dtype=float).copy()
        bounds[0] = np.maximum(bounds[0] - margin - self.width, self.anatomy_bounds[0])
        bounds[1] = np.minimum(bounds[1] + margin + self.width, self.anatomy_bounds[1])
        if np.any(bounds[1] < bounds[0]):
            return None
        corners = self._corners(bounds) @ self.rotation.T + self.translation
        return self.box_scanner(np.stack([corners.min(axis=0), corners.max(axis=0)]))

    def anatomy_coords(self, box):
        """Anatomy-frame x, y, z of the box's voxel centres, broadcast from the 1-D axes."""
        k, j, i = box
        p = (self.axes[0][i][None, None, :] - np.float32(self.translation[0]),
             self.axes[1][j][None, :, None] - np.float32(self.translation[1]),
             self.axes[2][k][:, None, None] - np.float32(self.translation[2]))
        out = []
        for axis in range(3):
            total = None
            for n in range(3):
                c = self.rotation[n, axis]
                if abs(c) < 1e-12:
                    continue
                term = p[n] if c == 1.0 else p[n] * np.float32(c)
                total = term if total is None else total + term
            out.append(total)
        return out

    def paint(self, box, occ, value, label=None) -> None:
        """Blend `value` into the box with occupancy `occ`; label where occ >= 0.5."""
        region = self.hu[box]
        region += occ * (value - region)
        if label is not None:
            mask = np.broadcast_to(occ >= 0.5, region.shape)
            target = self.labels[box]
            if np.ndim(label) == 0:
                target[mask] = label
            else:
                target[mask] = np.broadcast_to(label, region.shape)[mask]

    def paint_sdf(self, box, d, value, label=None) -> None:
        self.paint(box, occupancy(d, self.width), value, label)

    def tube_occupancy(self, tubes: Capsules, radii: list[tuple[np.ndarray, np.ndarray]],
                       thin_scaling: bool = True):
        """Union occupancy of scanner-frame tubes for each radius pair (ra, rb) in `radii`.

        Returns (box, [occupancy arrays]) over the box that the tubes touch, or None.
        """
        if len(tubes) == 0:
            return None
        r_max = np.max([np.maximum(ra, rb) for ra, rb in radii], axis=0)
        low = np.minimum(tubes.a, tubes.b) - r_max[:, None] - self.width
        high = np.maximum(tubes.a, tubes.b) + r_max[:, None] + self.width
        z_lo, z_hi = self.axes[2][0] - self.width, self.axes[2][-1] + self.width
        hits = np.flatnonzero((high[:, 2] >= z_lo) & (low[:, 2] <= z_hi))
        ranges = [self.grid.index_ranges(axis, low[hits, axis], high[hits, axis]) for axis in range(3)]
        k0 = np.maximum(ranges[2][0], self.k0) - self.k0
        k1 = np.minimum(ranges[2][1], self.k1) - self.k0
        ok = (ranges[0][1] > ranges[0][0]) & (ranges[1][1] > ranges[1][0]) & (k1 > k0)
        boxes = [(n, (slice(kk0, kk1), slice(j0, j1), slice(i0, i1)))
                 for n, kk0, kk1, j0, j1, i0, i1, good in zip(
                     hits.tolist(), k0.tolist(), k1.tolist(), ranges[1][0].tolist(),
                     ranges[1][1].tolist(), ranges[0][0].tolist(), ranges[0][1].tolist(), ok.tolist())
                 if good]
        if not boxes:
            return None
        union = tuple(slice(min(b[a].start for _, b in boxes), max(b[a].stop for _, b in boxes))
                      for a in range(3))
        shape = tuple(s.stop - s.start for s in union)
        buffers = [np.zeros(shape, dtype=np.float32) for _ in radii]
        w = self.width
        for n, (k, j, i) in boxes:
            a, ab = tubes.a[n], tubes.b[n] - tubes.a[n]
            px = self.axes[0][i] - np.float32(a[0])
            py = self.axes[1][j] - np.float32(a[1])
            pz = self.axes[2][k] - np.float32(a[2])
            ll = float(ab.dot(ab)) or 1e-6
            dot = ((pz * np.float32(ab[2]))[:, None, None] + (py * np.float32(ab[1]))[None, :, None]
                   + (px * np.float32(ab[0]))[None, None, :])
            t = np.clip(dot * np.float32(1.0 / ll), 0.0, 1.0)
            dist2 = (pz * pz)[:, None, None] + (py * py)[None, :, None] + (px * px)[None, None, :]
            dist2 -= t * (2.0 * dot - t * np.float32(ll))
            dist = np.sqrt(np.maximum(dist2, 0.0, out=dist2), out=dist2)
            local = (slice(k.start - union[0].start, k.stop - union[0].start),
                     slice(j.start - union[1].start, j.stop - union[1].start),
                     slice(i.start - union[2].start, i.stop - union[2].start))
            for buf, (ra, rb) in zip(buffers, radii):
                d = dist - (np.float32(ra[n]) + t * np.float32(rb[n] - ra[n]))
                occ = occupancy(d, w)
                if thin_scaling:
                    scale = min(1.0, (ra[n] + rb[n]) / w)
                    if scale < 1.0:
                        occ *= np.float32(scale)
                np.maximum(buf[local], occ, out=buf[local])
        return union, buffers


def render_slab(phantom: Phantom, grid: ScanGrid, motion: RigidMotion, day: float,
                k0: int, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """HU (float32) and labels (uint8) of slices [k0, k1), arrays indexed (k, row, column)."""
    s = _Slab(grid, motion, k0, k1)
    anat = phantom.anatomy
    R, t = s.rotation, s.translation

    # The table is fixed to the scanner; everything else moves with the patient.
    box = s.box_scanner(np.array([[-1e4, A.TABLE_TOP_Y_MM - s.width, -1e4],
                                  [1e4, A.TABLE_TOP_Y_MM + A.TABLE_THICKNESS_MM + s.width, 1e4]]))
    if box is not None:
        y = s.axes[1][box[1]][None, :, None]
        d = np.maximum(A.TABLE_TOP_Y_MM - y, y - (A.TABLE_TOP_Y_MM + A.TABLE_THICKNESS_MM))
        s.paint_sdf(box, d, A.HU_TABLE)

    full = s.full
    x, y, z = s.anatomy_coords(full)
    s.paint_sdf(full, A.body_sdf(x, y, z), A.HU_FAT)
    s.paint_sdf(full, A.fat_inner_sdf(x, y, z), A.HU_MUSCLE)
    para = np.array([[c[0] - r[0], c[1] - r[1], -1e4] for c, r in A.PARASPINAL]).min(axis=0)
    para_hi = np.array([[c[0] + r[0], c[1] + r[1], 1e4] for c, r in A.PARASPINAL]).max(axis=0)
    box = s.box_anatomy(np.stack([para, para_hi]))
    if box is not None:
        s.paint_sdf(box, A.paraspinal_sdf(*s.anatomy_coords(box)), A.HU_MUSCLE)
    cage = A.cage_sdf(x, y, z)
    dome = A.dome_sdf(x, y, z)
    s.paint_sdf(full, cage, A.HU_MEDIASTINAL_FAT)
    s.paint_sdf(full, np.maximum(cage, -dome), A.HU_LIVER)

    lung = np.maximum(cage + A.PLEURAL_GAP_MM, dome)
    del cage, dome
    for ex in anat.exclusions:
        box = s.box_anatomy(ex.bounds, ex.margin)
        if box is not None:
            np.maximum(lung[box], ex.margin - ex.sdf(*s.anatomy_coords(box)), out=lung[box])
    lung_hu = A.HU_LUNG + A.HU_LUNG_GRADIENT * (y * (1.0 / A.CAGE_SEMI[1]))
    lung_label = np.where(x > 0, A.LABEL_LEFT_LUNG, A.LABEL_RIGHT_LUNG).astype(np.uint8)
    s.paint_sdf(full, lung, lung_hu, lung_label)
    del lung, lung_hu, lung_label, x, y, z

    box = s.box_anatomy(anat.heart.bounds())
    if box is not None:
        s.paint_sdf(box, anat.heart.sdf(*s.anatomy_coords(box)), A.HU_BLOOD, A.LABEL_HEART)
    _paint_tubes(s, anat.aorta.transformed(R, t), A.HU_BLOOD, A.LABEL_HEART)
    _paint_tubes(s, anat.esophagus.transformed(R, t), A.HU_ESOPHAGUS, 0)
    _paint_tubes(s, anat.vessels.transformed(R, t), A.HU_BLOOD, A.LABEL_VESSEL)
    airways = anat.airways.transformed(R, t)
    wall_a, wall_b = A.airway_wall_mm(airways.ra), A.airway_wall_mm(airways.rb)
    result = s.tube_occupancy(airways, [(airways.ra + wall_a, airways.rb + wall_b),
                                        (airways.ra, airways.rb)])
    if result is not None:
        box, (outer, lumen) = result
        s.paint(box, outer, A.HU_AIRWAY_WALL, 0)
        s.paint(box, lumen, A.HU_AIR, A.LABEL_AIRWAY)

    _paint_bones(s, anat)
    for nodule in phantom.nodules:
        if nodule.present(day):
            _paint_nodule(s, nodule, day)
    return s.hu, s.labels


def _paint_tubes(s: _Slab, tubes: Capsules, value: float, label: int | None) -> None:
    result = s.tube_occupancy(tubes, [(tubes.ra, tubes.rb)])
    if result is not None:
        box, (occ,) = result
        s.paint(box, occ, value, label)


def _paint_bone(s: _Slab, box, d) -> None:
    """Cortex and marrow from one distance: the marrow is the bone shrunk by CORTEX_MM."""
    s.paint_sdf(box, d, A.HU_CORTICAL, A.LABEL_BONE)
    s.paint_sdf(box, d + A.CORTEX_MM, A.HU_CANCELLOUS)


def _paint_bones(s: _Slab, anat: A.ChestAnatomy) -> None:
    (sx, sy), (srx, sry) = A.SPINE_REGION
    box = s.box_anatomy(np.array([[sx - srx - 15, sy - sry, -1e4], [sx + srx + 15, sy + sry + 15, 1e4]]))
    if box is not None:
        x, y, z = s.anatomy_coords(box)
        s.paint_sdf(box, A.vertebral_column_sdf(x, y, z), A.HU_DISC, 0)
        _paint_bone(s, box, A.vertebral_bone_sdf(x, y, z))
        s.paint_sdf(box, A.canal_sdf(x, y, z), A.HU_CSF, 0)
    (cx, cy), (rx, ry), (z0, z1) = A.STERNUM
    box = s.box_anatomy(np.array([[cx - rx, cy - ry, z0], [cx + rx, cy + ry, z1]]))
    if box is not None:
        _paint_bone(s, box, A.sternum_sdf(*s.anatomy_coords(box)))
    ribs = anat.ribs.transformed(s.rotation, s.translation)
    result = s.tube_occupancy(ribs, [(ribs.ra, ribs.rb), (ribs.ra - A.CORTEX_MM, ribs.rb - A.CORTEX_MM)],
                              thin_scaling=False)
    if result is not None:
        box, (outer, marrow) = result
        s.paint(box, outer, A.HU_CORTICAL, A.LABEL_BONE)
        s.paint(box, marrow, A.HU_CANCELLOUS)


def _paint_nodule(s: _Slab, nodule, day: float) -> None:
    shape = nodule.ellipsoid(day)
    box = s.box_anatomy(shape.bounds())
    if box is None:
        return
    x, y, z = s.anatomy_coords(box)
    s.paint_sdf(box, shape.sdf(x, y, z), nodule.hu, A.LABEL_NODULE_BASE + nodule.index)
    core = nodule.core_ellipsoid(day)
    if core is not None:
        s.paint_sdf(box, core.sdf(x, y, z), nodule.core_hu)


def add_noise(hu: np.ndarray, seed: int, visit: int, k0: int) -> None:
    """Slightly correlated Gaussian noise, seeded per slice so any slab size gives the same
    image: white noise smoothed by [1, 2, 1] / 4 along rows and columns."""
    for n in range(hu.shape[0]):
        rng = np.random.default_rng([seed, 4, visit, k0 + n])
        white = rng.standard_normal(hu.shape[1:], dtype=np.float32)
        white *= np.float32(_RAW_NOISE_SIGMA)
        for axis in (0, 1):
            smooth = white * np.float32(0.5)
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(1, None), slice(None, -1)
            smooth[tuple(lo)] += white[tuple(hi)] * np.float32(0.25)
            smooth[tuple(hi)] += white[tuple(lo)] * np.float32(0.25)
            white = smooth
        hu[n] += white
