"""Inference benchmark: the same 3-D U-Net run by ONNX Runtime and by PyTorch eager through the
same sliding window (same patches, overlap, batch), in one run; and a whole demo chest CT
segmented by the bundled model, with peak memory.

The network is built here (random weights: speed does not depend on them) and exported with the
legacy exporter at opset 17, as the bundled models are.
"""

from __future__ import annotations

import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from viewer.bench.timing import median_seconds


def _unet(channels=(16, 32, 64)):
    import torch
    from torch import nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.InstanceNorm3d(cout), nn.ReLU(inplace=True),
                             nn.Conv3d(cout, cout, 3, padding=1), nn.InstanceNorm3d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            a, b, c = channels
            self.enc1, self.enc2, self.mid = block(1, a), block(a, b), block(b, c)
            self.up2, self.dec2 = nn.ConvTranspose3d(c, b, 2, stride=2), block(2 * b, b)
            self.up1, self.dec1 = nn.ConvTranspose3d(b, a, 2, stride=2), block(2 * a, a)
            self.head = nn.Conv3d(a, 3, 1)

        def forward(self, x):
            e1 = self.enc1(x)
            e2 = self.enc2(nn.functional.max_pool3d(e1, 2))
            m = self.mid(nn.functional.max_pool3d(e2, 2))
            d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
            d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
            return self.head(d1)

    torch.manual_seed(0)
    return UNet().eval()


def run_inference_benchmark(repeats: int = 3, size=(64, 160, 160), patch=(32, 64, 64), overlap: float = 0.25,
                            batch: int = 2, threads: int = 2, whole_ct: bool = True,
                            log: Callable[[str], None] = print) -> dict:
    import onnxruntime as ort
    import torch

    from viewer.inference.sliding_window import sliding_window

    torch.set_num_threads(threads)
    model = _unet()
    rng = np.random.default_rng(0)
    array = rng.random((1,) + tuple(size), dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unet.onnx"
        torch.onnx.export(model, torch.zeros((1, 1) + tuple(patch)), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def ort_predict(x):
            return session.run(["y"], {"x": x})[0]

        def torch_predict(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()

        run = lambda predict: sliding_window(array, patch, predict, overlap, "gaussian", batch)  # noqa: E731
        log(f"sliding window over {size} with patch {patch}, overlap {overlap}, batch {batch}, {threads} threads ...")
        a, b = run(ort_predict), run(torch_predict)
        max_diff = float(np.abs(a - b).max())
        t_ort = median_seconds(lambda: run(ort_predict), repeats)
        t_torch = median_seconds(lambda: run(torch_predict), repeats)
        int8 = _int8_session(path, array, patch, options, Path(tmp))
        int8_predict = lambda x: int8.run(["y"], {"x": x})[0]  # noqa: E731
        c = run(int8_predict)
        t_int8 = median_seconds(lambda: run(int8_predict), max(1, repeats // 2))
    correlation = float(np.corrcoef(a.ravel(), c.ravel())[0, 1])
    report = {"volume": list(size), "patch": list(patch), "overlap": overlap, "batch": batch, "threads": threads,
              "ort_s": t_ort, "torch_s": t_torch, "speedup": t_torch / t_ort, "goal_speedup": 1.5,
              "max_abs_difference": max_diff, "ort_int8_s": t_int8, "int8_speedup": t_torch / t_int8,
              "int8_correlation": correlation}
    lines = [f"Inference benchmark (CPU, {threads} threads, median of {repeats})",
             f"  3-D U-Net sliding window over {size[2]}x{size[1]}x{size[0]}: ONNX Runtime {t_ort:.2f} s, "
             f"PyTorch eager {t_torch:.2f} s, speed-up {t_torch / t_ort:.2f}x (goal >= 1.5x); outputs agree to {max_diff:.1e}",
             f"  the same network quantised to int8 (ONNX Runtime static QDQ, per channel): {t_int8:.2f} s, "
             f"{t_torch / t_int8:.2f}x PyTorch fp32; outputs correlate with fp32 at r = {correlation:.3f}"]
    if whole_ct:
        lines += _whole_ct(report, log)
    report["text"] = "\n".join(lines)
    return report


def _int8_session(path: Path, array: np.ndarray, patch, options, tmp: Path):
    """The benchmark network quantised by ONNX Runtime's own static quantiser (QDQ, per-channel
    int8 weights, uint8 activations calibrated on patches of the benchmark volume): the usual way
    to speed up CPU inference, measured here because on MLAS its 3-D convolutions may not be
    faster than fp32."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Patches(CalibrationDataReader):
        def __init__(self):
            d, h, w = patch
            corners = [(0, 0, 0), tuple(max(0, s - p) for s, p in zip(array.shape[1:], patch))]
            self.items = iter([{"x": np.ascontiguousarray(array[None, :, z:z + d, y:y + h, x:x + w])}
                               for z, y, x in corners])

        def get_next(self):
            return next(self.items, None)

    prepared, quantised = tmp / "prepared.onnx", tmp / "int8.onnx"
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(quantised), Patches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return ort.InferenceSession(str(quantised), options, providers=["CPUExecutionProvider"])


def _whole_ct(report: dict, log) -> list[str]:
    from viewer.demo import generate_demo
    from viewer.dicom import load
    from viewer.inference.registry import discover
    from viewer.inference.run import segment

    cards = [c for c in discover().cards if c.task == "segmentation" and "CT" in c.modalities]
    if not cards:
        return ["  whole demo CT: no bundled CT segmentation model installed"]
    card = cards[0]
    with tempfile.TemporaryDirectory() as tmp:
        log("generating a demo chest CT (384x384x200) ...")
        demo = generate_demo(Path(tmp), preset="demo", n_visits=1, seed=11)
        volume = load(demo.visits[0].study_dir)
        log(f"segmenting with {card.id} {card.version} ...")
        t0 = time.perf_counter()
        mask = segment(volume, card, provider="cpu")
        seconds = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report.update(whole_ct_s=seconds, whole_ct_goal_s=60.0, peak_rss_mb=peak_mb, whole_ct_shape=list(volume.shape),
                  whole_ct_model=f"{card.id} {card.version}", whole_ct_provider=mask.provider)
    return [f"  whole demo chest CT {volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} with {card.id} {card.version}: "
            f"{seconds:.1f} s on {mask.provider} (goal < 60 s); process peak memory {peak_mb:.0f} MB"]
