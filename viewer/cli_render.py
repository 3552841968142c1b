"""`radsight render`: offscreen pictures of a 2-D or 3-D view, with overlays."""

from __future__ import annotations

from viewer.core.errors import RadSightError
from viewer.core.points import parse_point


def _emit(data, as_json: bool, human) -> None:
    from viewer.cli import _emit as emit

    emit(data, as_json, human)


def add_render_parser(sub) -> None:
    p = sub.add_parser("render", help="offscreen picture of a view, with overlays, to PNG")
    p.add_argument("path")
    p.add_argument("--view", default="axial", choices=["axial", "coronal", "sagittal", "3d"])
    p.add_argument("--at", help="X,Y,Z in LPS mm the plane passes through (default: the centre)")
    p.add_argument("--slice", type=int, help="axial slice index k (alternative to --at)")
    p.add_argument("--preset", help="window preset: lung, mediastinum, bone, brain, abdomen")
    p.add_argument("--window", type=float, help="window width")
    p.add_argument("--level", type=float, help="window level (centre)")
    p.add_argument("--labels", help="label volume (DICOM SEG to come; NIfTI/NRRD now) drawn as an overlay")
    p.add_argument("--outline", action="store_true", help="draw label outlines instead of filled areas")
    p.add_argument("--scale", type=float, default=2.0, help="screen pixels per sample (default 2)")
    p.add_argument("--volume-preset", default="ct-bone", help="3D: ct-bone, ct-lung, ct-soft-tissue, mip")
    p.add_argument("--azimuth", type=float, default=0.0, help="3D: degrees about the long axis from anterior")
    p.add_argument("--elevation", type=float, default=0.0, help="3D: degrees up from the axial plane")
    p.add_argument("--size", type=int, default=800, help="3D: picture size in pixels")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_render)


def cmd_render(args) -> int:
    from viewer.core.presets import find_preset
    from viewer.dicom import load
    from viewer.render.offscreen import write_png
    from viewer.render.snapshot import render_slice

    volume = load(args.path)
    window = None
    if args.preset:
        try:
            preset = find_preset(args.preset)
        except ValueError as exc:
            raise RadSightError(str(exc)) from None
        window = (preset.width, preset.level)
    if args.window is not None or args.level is not None:
        if args.window is None or args.level is None:
            raise RadSightError("--window and --level go together")
        window = (args.window, args.level)
    labels = load(args.labels) if args.labels else None  # resliced through its own affine
    if args.view == "3d":
        from viewer.render.snapshot import render_3d
        from viewer.render.volume_scene import VOLUME_PRESETS

        if args.volume_preset not in VOLUME_PRESETS:
            raise RadSightError(f"unknown 3D preset {args.volume_preset!r}; use one of {', '.join(VOLUME_PRESETS)}")
        rgb = render_3d(volume, args.volume_preset, labels, args.azimuth, args.elevation, (args.size, args.size))
        out = write_png(rgb, args.out)
        _emit({"out": str(out), "width": rgb.shape[1], "height": rgb.shape[0], "view": "3d"},
              args.json, lambda d: print(d["out"]))
        return 0
    at = parse_point(args.at) if args.at else None
    if args.slice is not None:
        if not 0 <= args.slice < volume.shape[0]:
            raise RadSightError(f"--slice {args.slice} is outside 0..{volume.shape[0] - 1}")
        nz, ny, nx = volume.shape
        at = tuple(volume.index_to_lps([(nx - 1) / 2, (ny - 1) / 2, args.slice]))
    rgb = render_slice(volume, args.view, at=at, window=window, labels=labels, outline=args.outline,
                       scale=args.scale)
    out = write_png(rgb, args.out)
    _emit({"out": str(out), "width": rgb.shape[1], "height": rgb.shape[0], "view": args.view},
          args.json, lambda d: print(d["out"]))
    return 0
