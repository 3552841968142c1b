"""The plugin's `radsight` subcommands; their arguments are declared in manifest.yaml."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from viewer.core.errors import RadSightError
from viewer.core.points import parse_point


def measure(args: argparse.Namespace) -> int:
    """`radsight measure PATH --at X,Y,Z [--json]`: one NODULE record of the nodule at the point."""
    from viewer.analysis.nodules import measure_at
    from viewer.dicom import load

    from radsight_lung_nodules.records import nodule_record

    point = parse_point(args.at)
    if not Path(args.path).exists():
        raise RadSightError(f"{args.path}: no such file or folder")
    volume = load(args.path, series_uid=args.series)
    record = nodule_record(measure_at(volume, point), "M1")
    if args.json:
        json.dump(record, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    x, y, z = record["centre_lps_mm"]
    print(f"{record['type']} nodule at {x:.1f}, {y:.1f}, {z:.1f} mm (LPS){' (juxtapleural)' if record['juxtapleural'] else ''}")
    print(f"  volume {record['volume_mm3']:.1f} mm3, long {record['long_axis_mm']:.1f} mm, short "
          f"{record['short_axis_mm']:.1f} mm, mean diameter {record['mean_diameter_mm']:.1f} mm, "
          f"mean {record['mean_hu']:.0f} HU")
    if record["lung_rads"]:
        lr = record["lung_rads"]
        print(f"  Lung-RADS {lr['version']} (as a baseline finding): {lr['category']} ({lr['rule']}): {lr['management']}")
    return 0
