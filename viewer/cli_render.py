"""`radsight render`: offscreen pictures of a 2-D or 3-D view, with overlays; 3-D stills with
clipping and captions up to 8192 px, and turntable animations (MP4, GIF) for teaching."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from viewer.core.errors import RadSightError
from viewer.core.points import parse_point

STILL_FORMATS = (".png",)


def _emit(data, as_json: bool, human) -> None:
    from viewer.cli import _emit as emit

    emit(data, as_json, human)


def add_render_parser(sub) -> None:
    p = sub.add_parser("render", help="offscreen picture of a view (PNG) or a 3-D turntable (MP4, GIF)")
    p.add_argument("path")
    p.add_argument("--view", default="axial", choices=["axial", "coronal", "sagittal", "3d"])
    p.add_argument("--at", help="X,Y,Z in LPS mm the plane passes through (default: the centre)")
    p.add_argument("--slice", type=int, help="axial slice index k (alternative to --at)")
    p.add_argument("--preset", help="window preset: lung, mediastinum, bone, brain, abdomen")
    p.add_argument("--window", type=float, help="window width")
    p.add_argument("--level", type=float, help="window level (centre)")
    p.add_argument("--labels", help="label volume (NIfTI/NRRD, or a DICOM SEG file) drawn as an overlay")
    p.add_argument("--outline", action="store_true", help="draw label outlines instead of filled areas")
    p.add_argument("--scale", type=float, help="2D: screen pixels per sample (default 2); 3D: the picture is "
                   "--size times this, captions and lines enlarged alike (default 1)")
    p.add_argument("--volume-preset", default="ct-bone", help="3D: ct-bone, ct-lung, ct-soft-tissue, ct-vessels, "
                   "ct-skin, mip, mr-default (from the data's percentiles)")
    p.add_argument("--azimuth", type=float, default=0.0, help="3D: degrees about the long axis from anterior "
                   "(turntable: the first frame's)")
    p.add_argument("--elevation", type=float, default=0.0, help="3D: degrees up from the axial plane")
    p.add_argument("--size", default="800", help="3D: picture size in pixels, N or WxH (at most 8192 a side)")
    p.add_argument("--clip-box", metavar="XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX",
                   help="3D: keep only this LPS box (mm)")
    p.add_argument("--clip-plane", action="append", default=[], metavar="X,Y,Z,NX,NY,NZ",
                   help="3D: cut at the plane through X,Y,Z (LPS mm), keeping the side the normal points to; "
                        "0,0,0,0,1,0 removes the anterior half (repeatable; negative first value: --clip-plane=-5,...)")
    p.add_argument("--annotate", action="append", default=[], metavar="X,Y,Z:TEXT",
                   help="3D: caption with a leader line to the LPS point (repeatable; --annotate=-5,2,3:Text)")
    p.add_argument("--annotate-labels", nargs="?", const="all", metavar="VALUES",
                   help="3D: caption each named label of --labels at its surface (or only VALUES, e.g. 1,2,5)")
    p.add_argument("--label-names", help="JSON file of label names ({\"1\": \"left lung\", ...} or an object with "
                   "\"labels\" like the demo's ground_truth.json); default: a SEG's segment labels, or a "
                   "ground_truth.json beside the labels file or one folder up")
    p.add_argument("--font-size", type=int, help="3D: caption text height in pixels (default 1/30 of the picture)")
    p.add_argument("--turntable", action="store_true", help="3D: one turn about the patient's long axis to "
                   "--out .mp4 or .gif")
    p.add_argument("--frames", type=int, default=36, help="turntable: number of frames (default 36, 10 degrees each)")
    p.add_argument("--fps", type=float, default=12.0, help="turntable: frames per second (default 12)")
    p.add_argument("--out", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_render)


def cmd_render(args) -> int:
    from viewer.core.presets import find_preset
    from viewer.dicom import load
    from viewer.render.offscreen import write_png
    from viewer.render.snapshot import render_slice

    if args.view != "3d":
        for option, value in (("--turntable", args.turntable), ("--annotate", args.annotate),
                              ("--annotate-labels", args.annotate_labels), ("--clip-plane", args.clip_plane),
                              ("--clip-box", args.clip_box)):
            if value:
                raise RadSightError(f"{option} is for --view 3d (got --view {args.view})")
    if args.turntable:
        _check_turntable_out(args.out)
    else:
        _check_still_out(args.out)
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
    labels, names = _load_labels(args.labels, volume) if args.labels else (None, {})
    if args.view == "3d":
        return _render_3d(args, volume, labels, names)
    at = parse_point(args.at) if args.at else None
    if args.slice is not None:
        if not 0 <= args.slice < volume.shape[0]:
            raise RadSightError(f"--slice {args.slice} is outside 0..{volume.shape[0] - 1}")
        nz, ny, nx = volume.shape
        at = tuple(volume.index_to_lps([(nx - 1) / 2, (ny - 1) / 2, args.slice]))
    rgb = render_slice(volume, args.view, at=at, window=window, labels=labels, outline=args.outline,
                       scale=2.0 if args.scale is None else args.scale)
    out = write_png(rgb, args.out)
    _emit({"out": str(out), "width": rgb.shape[1], "height": rgb.shape[0], "view": args.view},
          args.json, lambda d: print(d["out"]))
    return 0


def _render_3d(args, volume, labels, names) -> int:
    from viewer.render.annotations import Annotation, default_font_size
    from viewer.render.offscreen import write_png
    from viewer.render.offscreen_window import MAX_SIDE_PX
    from viewer.render.snapshot import Scene3D
    from viewer.render.volume_scene import VOLUME_PRESETS

    if args.volume_preset not in VOLUME_PRESETS:
        raise RadSightError(f"unknown 3D preset {args.volume_preset!r}; use one of {', '.join(VOLUME_PRESETS)}")
    scale = 1.0 if args.scale is None else args.scale
    width, height = _parse_size(args.size)
    if not 0 < scale <= MAX_SIDE_PX:
        raise RadSightError(f"--scale {args.scale} must be a positive number")
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    if max(out_w, out_h) > MAX_SIDE_PX:
        raise RadSightError(f"--size {args.size} x --scale {scale:g} gives {out_w} x {out_h} px; the largest "
                            f"offscreen picture is {MAX_SIDE_PX} px a side")
    if args.font_size is not None and not 4 <= args.font_size <= 1000:
        raise RadSightError(f"--font-size {args.font_size} px is outside 4..1000")
    font_size = round((args.font_size or default_font_size(height)) * scale)
    annotations = [Annotation.parse(spec) for spec in args.annotate]
    if args.annotate_labels:
        annotations += _label_captions(args, labels, names)
    clip_box = _numbers(args.clip_box, 6, "--clip-box", "XMIN,XMAX,YMIN,YMAX,ZMIN,ZMAX") if args.clip_box else None
    if clip_box is not None and not all(lo < hi for lo, hi in zip(clip_box[::2], clip_box[1::2])):
        raise RadSightError(f"--clip-box {args.clip_box}: each minimum must be below its maximum")
    planes = []
    for spec in args.clip_plane:
        v = _numbers(spec, 6, "--clip-plane", "X,Y,Z,NX,NY,NZ")
        planes.append((v[:3], v[3:]))
    try:
        scene = Scene3D(volume, args.volume_preset, labels, clip_box, planes, annotations, font_size)
    except ValueError as exc:  # a zero normal, too many planes
        raise RadSightError(str(exc)) from None
    if args.turntable:
        from viewer.render.turntable import render_turntable

        def progress(k: int, n: int) -> None:
            print(f"frame {k}/{n}", file=sys.stderr, flush=True)

        try:
            result = render_turntable(scene, args.out, args.frames, args.fps, args.elevation, (out_w, out_h),
                                      args.azimuth, progress)
        except ValueError as exc:
            raise RadSightError(str(exc)) from None
        _emit(result.to_json(), args.json, lambda d: print(d["out"]))
        return 0
    (rgb,) = scene.views([(args.azimuth, args.elevation)], (out_w, out_h))
    out = write_png(rgb, args.out)
    _emit({"out": str(out), "width": rgb.shape[1], "height": rgb.shape[0], "view": "3d"},
          args.json, lambda d: print(d["out"]))
    return 0


def _check_still_out(out: str) -> None:
    suffix = Path(out).suffix.lower()
    if suffix not in STILL_FORMATS:
        hint = " (animations: add --view 3d --turntable)" if suffix in (".mp4", ".gif") else ""
        raise RadSightError(f"--out {out}: a picture is written as {', '.join(STILL_FORMATS)}; got "
                            f"{suffix or 'no extension'}{hint}")


def _check_turntable_out(out: str) -> None:
    from viewer.render.turntable import animation_format

    try:
        animation_format(out)
    except ValueError as exc:
        raise RadSightError(f"--out {exc}") from None


def _parse_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 16:
        raise RadSightError(f"--size needs N or WxH in pixels, each at least 16; got {text!r}")
    return values[0], values[1]


def _numbers(text: str, count: int, option: str, form: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise RadSightError(f"{option} needs {form} ({count} numbers, LPS mm); got {text!r}")
    return values


def _load_labels(path: str, volume):
    """The label volume and its names (a DICOM SEG carries them; a NIfTI/NRRD file does not)."""
    from viewer.dicom import load
    from viewer.dicom.scan import is_volume_file

    p = Path(path)
    if p.is_file() and not is_volume_file(p):
        import pydicom

        try:
            modality = pydicom.dcmread(p, stop_before_pixels=True).get("Modality")
        except Exception as exc:  # pydicom raises several types for non-DICOM files
            raise RadSightError(f"--labels {p}: not a NIfTI/NRRD volume nor DICOM ({type(exc).__name__})") from None
        if modality == "SEG":
            from viewer.dicom.seg import read_seg_labels

            return read_seg_labels(p, volume)
    return load(p), {}  # resliced through its own affine


def _label_names(args, names: dict[int, str]) -> dict[int, str]:
    if args.label_names:
        source = Path(args.label_names)
    elif names:
        return names
    else:
        here = Path(args.labels).resolve().parent
        found = [d / "ground_truth.json" for d in (here, here.parent) if (d / "ground_truth.json").is_file()]
        if not found:
            raise RadSightError(f"--annotate-labels: {args.labels} carries no label names; give them with "
                                "--label-names FILE.json ({\"1\": \"left lung\", ...})")
        source = found[0]
    try:
        data = json.loads(source.read_text())
        data = data.get("labels", data)
        return {int(k): str(v) for k, v in data.items() if int(k) != 0}
    except (OSError, ValueError, AttributeError) as exc:
        raise RadSightError(f"--label-names {source}: not a JSON object of label value -> name "
                            f"({type(exc).__name__}: {exc})") from None


def _label_captions(args, labels, names) -> list:
    from viewer.render.annotations import label_annotations

    if labels is None:
        raise RadSightError("--annotate-labels needs --labels (the label volume to annotate)")
    names = _label_names(args, names)
    values = None
    if args.annotate_labels != "all":
        try:
            values = [int(v) for v in args.annotate_labels.split(",")]
        except ValueError:
            raise RadSightError(f"--annotate-labels takes label values like 1,2,5; got {args.annotate_labels!r}") from None
    return label_annotations(labels, names, values)
