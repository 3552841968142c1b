"""Domain randomisation of segmentation training patches: what real chest CT has and the demo
phantom lacks.

Why these: the segmentation model 1.1.0 (phantom only) was run on the shared real scans
(validation only, never trained on) and its lung label compared with the CT-derived lung region
(viewer.analysis.lung_region). Its errors, seen on axial slices: the table, cushions and blankets
outside the body called lung (the phantom has pure air there), gas in the stomach and bowel called
lung, masses, juxtapleural nodules and consolidations cut out of the lung (the phantom's nodules
are small and free-standing), and the 8 mm, sharp-kernel (B70f) reconstructions noisier than
anything seen. So each patch, in HU on the model's 2 x 2 x 2.5 mm grid, may get:

- lesions: soft-tissue ellipsoids 8-90 mm against the pleura, the mediastinum or inside the lung
  (centre at 0.2-1.0 radius from the lung border, painted only over lung), labelled nodule so that
  the model's lung | nodule keeps them;
- opacities: ground-glass to consolidation patches inside the lung, labelled lung;
- clutter outside the body: table-like slabs and blanket/cushion blobs from -950 to +200 HU,
  labelled background;
- gas pockets in soft tissue away from the lung (stomach, bowel), labelled background;
- acquisition: HU offset and gain, slice thickness 2.5-8 mm (slab average, then the engine's
  linear resampling), kernel from soft (Gaussian) to sharp (unsharp mask), noise up to 120 HU.

Written by hand with scipy.ndimage (filters, distance maps) because the pasting needs the label
map: augmentation libraries (TorchIO, MONAI) offer the acquisition part only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SPACING_ZYX = np.array([2.5, 2.0, 2.0])  # the card's grid (z, y, x) in mm
# Pasted lesions up to this radius are labelled nodule, larger ones lung: the nodule channel stays
# what it was calibrated and tested for (nodules of the demo generator, up to ~25 mm), and lung |
# nodule covers a mass either way. Labelling the masses nodule (tried first) made the raw nodule
# channel call 5445 components on the 30 calibration scans (1.1.0: 146) and the calibrated one find
# 50 % of the held-out nodules >= 4 mm instead of 78 %.
NODULE_MAX_RADIUS_MM = 6.0


def _smooth_field(shape, rng, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return (f - f.mean()) / (f.std() + 1e-6)


def _ellipsoid(shape, centre, radii_vox) -> np.ndarray:
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    d = ((zz - centre[0]) / radii_vox[0]) ** 2 + ((yy - centre[1]) / radii_vox[1]) ** 2 \
        + ((xx - centre[2]) / radii_vox[2]) ** 2
    return d <= 1.0


def _lesions(hu, target, rng):
    lung = target >= 1
    if lung.sum() < 200:
        return
    depth = ndimage.distance_transform_edt(lung, sampling=SPACING_ZYX)
    for _ in range(rng.integers(1, 3)):
        r = rng.uniform(4.0, 45.0)
        ok = np.argwhere((depth >= 0.2 * r) & (depth <= 1.0 * r))
        if not len(ok):
            continue
        centre = ok[rng.integers(len(ok))]
        radii = r * rng.uniform(0.7, 1.3, 3) / SPACING_ZYX
        blob = _ellipsoid(hu.shape, centre, radii) & lung
        value = rng.uniform(-30.0, 60.0) + 15.0 * _smooth_field(hu.shape, rng, 1.0)
        hu[blob] = value[blob]
        target[blob] = 2 if r < NODULE_MAX_RADIUS_MM else 1


def _opacities(hu, target, rng):
    lung = target == 1
    if lung.sum() < 200:
        return
    field = _smooth_field(hu.shape, rng, rng.uniform(2.0, 4.0))
    patch = lung & (field > np.quantile(field[lung], rng.uniform(0.6, 0.9)))
    level = rng.uniform(-650.0, -50.0)
    mix = rng.uniform(0.5, 1.0)
    hu[patch] = (1 - mix) * hu[patch] + mix * level


def _outside_clutter(hu, outside, rng):
    if outside.sum() < 200:
        return
    field = _smooth_field(hu.shape, rng, rng.uniform(1.0, 3.0))
    blobs = outside & (field > rng.uniform(0.8, 2.0))
    foam = rng.uniform(30.0, 200.0) * _smooth_field(hu.shape, rng, rng.uniform(0.5, 1.5))  # foam, fabric
    hu[blobs] = rng.uniform(-950.0, 200.0) + foam[blobs]
    for _ in range(rng.integers(0, 3)):  # a table or cushion: a slab across the patch
        rows = np.nonzero(outside.any(axis=(0, 2)))[0]
        y0 = rows[rng.integers(len(rows))]
        slab = np.zeros(hu.shape, bool)
        slab[:, y0:y0 + rng.integers(1, 20), :] = True
        slab &= outside
        hu[slab] = rng.uniform(-950.0, 300.0) + foam[slab]


def _gas(hu, target, outside, rng):
    far = ndimage.distance_transform_edt(target == 0, sampling=SPACING_ZYX) > 12.0
    soft = np.argwhere(far & ~outside & (hu > -200.0) & (hu < 200.0))
    if not len(soft):
        return
    for _ in range(rng.integers(1, 4)):
        centre = soft[rng.integers(len(soft))]
        radii = rng.uniform(4.0, 20.0) * rng.uniform(0.6, 1.4, 3) / SPACING_ZYX
        pocket = _ellipsoid(hu.shape, centre, radii) & far & ~outside
        mottle = _smooth_field(hu.shape, rng, 0.8)
        gas = rng.uniform(-1000.0, -850.0)
        hu[pocket] = np.where(mottle[pocket] > rng.uniform(-0.5, 1.5), rng.uniform(-100.0, 60.0), gas)


def _thick_slices(hu, rng):
    step = int(rng.integers(2, 4))  # 5 or 7.5 mm slabs on the 2.5 mm grid
    slab = ndimage.uniform_filter1d(hu, step, axis=0, mode="nearest")
    offset = int(rng.integers(step))
    kept = np.arange(offset, hu.shape[0], step)
    pos = np.clip(np.arange(hu.shape[0], dtype=np.float32), kept[0], kept[-1])
    i = np.clip(np.searchsorted(kept, pos, side="right") - 1, 0, len(kept) - 1)
    j = np.minimum(i + 1, len(kept) - 1)
    w = np.where(j > i, (pos - kept[i]) / step, 0.0).astype(np.float32)[:, None, None]
    return (1 - w) * slab[kept[i]] + w * slab[kept[j]]


def randomise(hu: np.ndarray, target: np.ndarray, outside: np.ndarray, rng: np.random.Generator):
    """One randomised (HU patch, target) pair; inputs are not modified. `outside` marks the air
    around the patient (see outside_air)."""
    hu, target = hu.copy(), target.copy()
    if rng.random() < 0.5:
        _lesions(hu, target, rng)
    if rng.random() < 0.3:
        _opacities(hu, target, rng)
    if rng.random() < 0.5:
        _outside_clutter(hu, outside, rng)
    if rng.random() < 0.3:
        _gas(hu, target, outside, rng)
    hu = hu + rng.uniform(-40.0, 40.0) + (hu + 1000.0) * rng.uniform(-0.06, 0.06)
    if rng.random() < 0.15:  # a scan that ends inside the lungs: the engine pads with air
        k = int(rng.integers(2, hu.shape[0] // 2))
        end = slice(0, k) if rng.random() < 0.5 else slice(hu.shape[0] - k, None)
        hu[end], target[end] = -1000.0, 0
    if rng.random() < 0.4:
        hu = _thick_slices(hu, rng)
    kernel = rng.random()
    if kernel < 0.3:
        hu = ndimage.gaussian_filter(hu, rng.uniform(0.3, 0.8))
    elif kernel < 0.7:
        hu = hu + rng.uniform(0.3, 1.5) * (hu - ndimage.gaussian_filter(hu, 1.0))
    if rng.random() < 0.7:
        noise = rng.standard_normal(hu.shape).astype(np.float32)
        if rng.random() < 0.5:
            noise = ndimage.gaussian_filter(noise, 0.6)
            noise /= noise.std() + 1e-6
        hu = hu + rng.uniform(5.0, 120.0) * noise
    return hu.astype(np.float32), target


def outside_air(hu: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Air around the patient: background air (< -500 HU, not lung) connected, slice by slice, to
    the in-plane border of the volume."""
    out = np.zeros(hu.shape, bool)
    for z in range(hu.shape[0]):
        air = (hu[z] < -500.0) & (target[z] == 0)
        lab, n = ndimage.label(air)
        if not n:
            continue
        edge = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
        out[z] = np.isin(lab, edge[edge > 0])
    return out
