"""Sliding-window tiling and blending with fake predictors whose output is known."""

from __future__ import annotations

import numpy as np
import pytest

from viewer.core.errors import RadSightError
from viewer.inference.sliding_window import importance_map, patch_starts, sliding_window


def test_patch_starts_cover_the_edges():
    assert patch_starts(10, 16, 0.25) == [0]
    starts = patch_starts(100, 32, 0.25)
    assert starts[0] == 0 and starts[-1] == 68 and all(b - a <= 24 for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("blending", ["gaussian", "constant"])
@pytest.mark.parametrize("shape,patch", [((37, 50, 41), (16, 24, 16)), ((10, 12, 9), (16, 16, 16)), ((40, 33), (16, 16))])
def test_pointwise_model_is_reproduced_exactly(shape, patch, blending):
    """A model computing 2x+1 and -x per voxel must come back unchanged after blending."""
    rng = np.random.default_rng(0)
    array = rng.standard_normal((1,) + shape).astype(np.float32)
    calls = []

    def predict(batch):
        calls.append(batch.shape)
        return np.concatenate([2 * batch + 1, -batch], axis=1)

    out = sliding_window(array, patch, predict, overlap=0.5, blending=blending, batch_size=3, pad_value=-5)
    assert out.shape == (2,) + shape
    np.testing.assert_allclose(out[0], 2 * array[0] + 1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out[1], -array[0], rtol=1e-5, atol=1e-5)
    assert all(c[0] <= 3 for c in calls)


def test_gaussian_blending_weights_the_patch_centre():
    """Each patch reports its own index; where patches overlap the centre-most one dominates."""
    array = np.zeros((1, 48), np.float32)
    counter = iter(range(100))

    def predict(batch):
        return np.stack([np.full((1, 32), float(next(counter)), np.float32) for _ in batch])

    out = sliding_window(array, (32,), predict, overlap=0.5, blending="gaussian")
    # patches start at 0 and 16: voxel 16 is the first patch's centre, voxel 31 the second's
    assert out[0, 16] < 0.5 < out[0, 31]
    w = importance_map((32,), "gaussian")
    assert w.argmax() in (15, 16) and w.min() > 0


def test_cancel_and_bad_model_output():
    array = np.zeros((1, 64, 64), np.float32)
    with pytest.raises(RadSightError, match="cancelled"):
        sliding_window(array, (16, 16), lambda b: b, cancelled=lambda: True)
    with pytest.raises(RadSightError, match="keep the patch's spatial size"):
        sliding_window(array, (16, 16), lambda b: b[:, :, :8])


@pytest.mark.slow
def test_inference_benchmark_measures_onnxruntime_torch_and_int8_in_one_run():
    from viewer.bench.inference import run_inference_benchmark

    report = run_inference_benchmark(repeats=1, size=(32, 96, 96), patch=(16, 32, 32), threads=1, whole_ct=False,
                                     log=lambda message: None)
    assert report["max_abs_difference"] < 1e-4  # the same network in both runtimes
    assert report["speedup"] == pytest.approx(report["torch_s"] / report["ort_s"])
    assert report["int8_speedup"] == pytest.approx(report["torch_s"] / report["ort_int8_s"])
    assert 0.9 < report["int8_correlation"] < 1.0  # quantised: close to fp32, not equal
    assert "goal >= 1.5x" in report["text"] and "int8" in report["text"]
