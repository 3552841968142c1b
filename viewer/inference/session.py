"""ONNX Runtime sessions: provider choice (CUDA, then CPU), thread count, caching, axes.

The provider a session really uses is `session.get_providers()[0]` (ONNX Runtime falls back to
CPU silently when CUDA libraries are missing); that is what RadSight reports and shows.
"""

from __future__ import annotations

import ctypes
import os
from functools import lru_cache

import numpy as np
import onnxruntime as ort

from viewer.inference.card import ModelCard, ModelCardError

PROVIDER_NAMES = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


@lru_cache(maxsize=1)
def cuda_usable() -> bool:
    """CUDA is offered by onnxruntime-gpu builds even without a GPU; only try it when the CUDA
    runtime loads and reports at least one device (a toolkit without a GPU reports none). This
    spares a failed-load error in the log and a wrong provider in `models list`."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    for name in ("libcudart.so.12", "libcudart.so", "cudart64_12.dll"):
        try:
            runtime = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            status = runtime.cudaGetDeviceCount(ctypes.byref(count))
        except AttributeError:
            return False
        return status == 0 and count.value > 0
    return False


def provider_order(preference: str | None = None) -> list[str]:
    """'cuda', 'cpu' or None/'auto' (= $RADSIGHT_PROVIDER, else CUDA when usable, then CPU)."""
    preference = (preference or os.environ.get("RADSIGHT_PROVIDER") or "auto").lower()
    if preference == "cpu":
        return ["CPUExecutionProvider"]
    if preference not in ("auto", "cuda"):
        raise ValueError(f"unknown provider {preference!r}; use auto, cuda or cpu")
    return (["CUDAExecutionProvider"] if cuda_usable() else []) + ["CPUExecutionProvider"]


class ModelSession:
    """A loaded model: checks the file against its card, then runs (N, C, *spatial) batches."""

    def __init__(self, card: ModelCard, provider: str | None = None, threads: int | None = None):
        card.verify_file()
        options = ort.SessionOptions()
        threads = threads or int(os.environ.get("RADSIGHT_THREADS", "0") or 0)
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(card.path), options, providers=provider_order(provider))
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelCardError(f"{card.path}: ONNX Runtime cannot load the model "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
        self.card = card
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        names = [i.name for i in inputs]
        if card.input_name and card.input_name not in names:
            raise ModelCardError(f"{card.card_path}: input '{card.input_name}' is not in {card.path.name} "
                                 f"(inputs: {', '.join(names)})")
        self.input = next(i for i in inputs if i.name == (card.input_name or inputs[0].name))
        out_names = [o.name for o in outputs]
        if card.output_name and card.output_name not in out_names:
            raise ModelCardError(f"{card.card_path}: output '{card.output_name}' is not in {card.path.name} "
                                 f"(outputs: {', '.join(out_names)})")
        self.output_name = card.output_name or out_names[0]
        if len(self.input.shape) != len(card.axes):
            raise ModelCardError(f"{card.card_path}: input.axes {card.axes} has {len(card.axes)} axes but the "
                                 f"model's input '{self.input.name}' has shape {self.input.shape}")
        channel_axis = 1 if card.axes[1] == "C" else len(card.axes) - 1
        declared = self.input.shape[channel_axis]
        if isinstance(declared, int) and declared != card.channels:
            raise ModelCardError(f"{card.card_path}: the card says {card.channels} input channel(s), the model "
                                 f"expects {declared}")

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, *spatial) float32 in, (N, K, *spatial) out, whatever the model's axis order."""
        channels_last = self.card.axes.endswith("C")
        x = np.moveaxis(batch, 1, -1) if channels_last else batch
        y = self.session.run([self.output_name], {self.input.name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.moveaxis(y, -1, 1) if channels_last and y.ndim == batch.ndim else y


_CACHE: dict[tuple, ModelSession] = {}


def get_session(card: ModelCard, provider: str | None = None, threads: int | None = None) -> ModelSession:
    """Sessions are cached per model file, version and provider: loading costs more than running."""
    key = (str(card.path), card.sha256, card.version, provider or os.environ.get("RADSIGHT_PROVIDER"), threads)
    if key not in _CACHE:
        _CACHE[key] = ModelSession(card, provider, threads)
    return _CACHE[key]
