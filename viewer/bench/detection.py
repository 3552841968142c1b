"""Detection time on a real study: the issue-14 goal is <= 60 s for a 512 x 512 x 300 chest CT on
2 cores, segmentation model included. Printed against references measured in the same run (the
series load and the segmentation model's inference), scaled to 300 slices of the study's
in-plane size, with the seconds of each detection stage so the remaining cost is visible.
Sensitivity and false positives are `radsight validate`'s business, not this one's.
"""

from __future__ import annotations

import time
from pathlib import Path

from viewer.analysis.detection import SEG_MODEL_ID, detect_in_study
from viewer.dicom import load
from viewer.inference.registry import discover
from viewer.inference.run import segment

GOAL_SECONDS_PER_300_SLICES = 60.0
MIN_SLICES_TO_SCALE = 100


def run_detection_benchmark(path: Path | str, provider: str | None = "cpu", log=None) -> dict:
    say = log or (lambda message: None)
    t0 = time.perf_counter()
    volume = load(path, use_cache=False)  # the reference is reading the study, not a cache hit
    seconds = {"load": time.perf_counter() - t0}
    say(f"loaded {volume.shape[2]}x{volume.shape[1]}x{volume.shape[0]} in {seconds['load']:.1f} s")
    t0 = time.perf_counter()
    mask = segment(volume, discover().get(SEG_MODEL_ID), provider=provider)
    seconds["segmentation"] = time.perf_counter() - t0
    say(f"segmentation model: {seconds['segmentation']:.1f} s")
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    detections = detect_in_study(volume, provider=provider, mask=mask, seconds=stages)
    seconds["detection"] = time.perf_counter() - t0
    say(f"detection: {seconds['detection']:.1f} s")
    per_300 = 300.0 / volume.shape[0]
    total = (seconds["segmentation"] + seconds["detection"]) * per_300
    scaled = volume.shape[0] >= MIN_SLICES_TO_SCALE  # a slab's candidates do not thin out with its slices
    breakdown = ", ".join(f"{name} {s:.1f} s" for name, s in stages.items())
    text = "\n".join([
        f"study: {volume.shape[2]} x {volume.shape[1]} x {volume.shape[0]} voxels, {len(detections)} detections",
        f"load {seconds['load']:.1f} s (reference), segmentation model {seconds['segmentation']:.1f} s (reference)",
        f"detection {seconds['detection']:.1f} s = {seconds['detection'] / seconds['load']:.1f}x the load, "
        f"{seconds['detection'] / seconds['segmentation']:.1f}x the segmentation model",
        f"detection stages: {breakdown} (masses run beside the candidates, the type classifier within "
        "measurement and checks)",
        f"segmentation + detection scaled to 300 slices: {total:.0f} s (goal <= {GOAL_SECONDS_PER_300_SLICES:.0f} s: "
        f"{'met' if total <= GOAL_SECONDS_PER_300_SLICES else 'NOT met'}); stages per 300 slices: "
        + ", ".join(f"{name} {s * per_300:.1f} s" for name, s in
                    {"segmentation model": seconds["segmentation"], **stages}.items()) if scaled else
        f"only {volume.shape[0]} slices: too few to scale to 300 (give a whole chest CT)"])
    return {"shape_zyx": list(volume.shape), "detections": len(detections),
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
            "seconds_per_300_slices": round(total, 1) if scaled else None,
            "goal_seconds_per_300_slices": GOAL_SECONDS_PER_300_SLICES,
            "goal_met": total <= GOAL_SECONDS_PER_300_SLICES if scaled else None, "text": text}
