"""`radsight export-mesh`: surface meshes of a study's segmentation for 3-D printing, teaching
and patient consultations (STL per label, OBJ+MTL, PLY, GLB); the work is in
viewer.render.mesh_export."""

from __future__ import annotations

import sys

from viewer.core.errors import RadSightError

FORMATS = ("stl", "obj", "ply", "glb")  # viewer.render.mesh_writers.FORMATS, without importing VTK to parse
QUALITIES = ("draft", "standard", "fine")  # viewer.render.meshes.QUALITIES


def add_mesh_parser(sub) -> None:
    p = sub.add_parser("export-mesh", help="surface meshes of a study's segmentation: STL, OBJ, PLY, glTF")
    p.add_argument("path", help="study folder or series")
    p.add_argument("--format", action="append", choices=FORMATS,
                   help="repeatable; default: all of " + ", ".join(FORMATS))
    p.add_argument("--out", required=True, help="folder for the mesh files")
    p.add_argument("--labels", help="label map (NIfTI, NRRD) or DICOM SEG to mesh instead of the study's stored "
                                    "segmentation")
    p.add_argument("--quality", choices=QUALITIES, default="standard",
                   help="draft: up to 80%% fewer triangles; standard: up to 50%% fewer (less where decimating "
                        "would break the closed surface); fine: every triangle, gentlest smoothing")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_export_mesh)


def _human(data: dict) -> None:
    print(f"{len(data['labels'])} meshes from {data['labels_source']} ({data['quality']}):")
    for item in data["labels"]:
        diff = item["volume_difference_pct"]
        state = "watertight" if item["watertight"] else "NOT watertight"
        print(f"  {item['value']:4d} {item['name']}: {item['triangles']} triangles, {item['volume_mm3']:.0f} mm3 "
              f"(mask {item['mask_volume_mm3']:.0f} mm3, {diff:+.2f}%), {state}")
        for problem in item["problems"]:
            print(f"       {problem}")
    for path in data["files"]:
        print(path)


def cmd_export_mesh(args) -> int:
    from viewer.cli import StderrProgress, _emit
    from viewer.render.mesh_export import export_meshes, study_labels
    from viewer.store import Store

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    progress = StderrProgress(not args.quiet, min_total=0)
    with Store() as store:
        source, facts = study_labels(args.path, args.labels, store=store, progress=progress, log=log)
    log(f"meshing {len(source.names) or 'the'} labels from {source.source}")
    try:
        data = export_meshes(source, args.out, args.format or list(FORMATS), args.quality, progress)
    except OSError as exc:
        raise RadSightError(f"{args.out}: cannot write the meshes: {exc}") from None
    data = {"study_uid": facts["study_uid"], "series_uid": facts["series_uid"], **data}
    _emit(data, args.json, _human)
    return 0
