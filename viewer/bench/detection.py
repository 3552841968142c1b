"""Detection benchmark on synthetic demo studies: sensitivity for present nodules >= 4 mm, false
positives per scan, volume error, and the detection time (threshold lung mask, so no model
inference is counted). `python -m viewer.bench.detection OUT --seeds 61 62`."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from viewer.analysis.detection import detect_nodules
from viewer.demo import generate_demo
from viewer.dicom import load


def bench(out: Path, seeds: list[int], preset: str = "demo") -> dict:
    scans, found, wanted, false_positives, seconds, errors = 0, 0, 0, 0, [], []
    for seed in seeds:
        demo = generate_demo(out / f"seed{seed}", preset=preset, n_visits=1, seed=seed)
        volume = load(demo.visits[0].study_dir)
        nodules = [n for n in demo.ground_truth()["visits"][0]["nodules"] if n["present"]]
        t0 = time.perf_counter()
        detections = detect_nodules(volume)
        seconds.append(time.perf_counter() - t0)
        scans += 1
        centres = np.array([d.measurement.centre_lps_mm for d in detections]).reshape(-1, 3)
        matched = set()
        for n in nodules:
            distance = np.linalg.norm(centres - n["centre_lps_mm"], axis=1) if len(centres) else np.array([np.inf])
            i = int(np.argmin(distance))
            if distance[i] <= max(2.0, n["equivalent_diameter_mm"] / 4):
                matched.add(i)
                if n["equivalent_diameter_mm"] >= 4.0:
                    found += 1
                    errors.append((n["volume_mm3"], detections[i].measurement.volume_mm3))
            if n["equivalent_diameter_mm"] >= 4.0:
                wanted += 1
        false_positives += len(detections) - len(matched)
    relative = [abs(m - t) / t for t, m in errors]
    return {"preset": preset, "seeds": seeds, "scans": scans, "nodules_ge_4mm": wanted, "detected": found,
            "sensitivity": found / max(wanted, 1), "false_positives_per_scan": false_positives / max(scans, 1),
            "median_volume_error": float(np.median(relative)) if relative else None,
            "seconds_per_scan": float(np.median(seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[61])
    parser.add_argument("--preset", default="demo")
    args = parser.parse_args()
    print(json.dumps(bench(args.out, args.seeds, args.preset), indent=2))


if __name__ == "__main__":
    main()
