"""Pictures that plugins contribute to a report's PDF (e.g. the lung-nodule plugin's growth
charts), made from the report's findings. A failing plugin costs its pictures, never the report."""

from __future__ import annotations

import os
from pathlib import Path

from viewer.core.errors import RadSightError


AUDIENCES = ("report", "patient")


def report_figures(records: list[dict], folder: Path | str, audience: str = "report") -> tuple[list[Path], list[str]]:
    """(PNG paths, problems): each `report_figures` contribution called as fn(records, folder,
    audience) with the report's included findings (DESIGN.md NODULE dicts); "report" pictures go
    into the PDF, "patient" ones are shown to the patient (plain words, no risk wording). One line
    per failing plugin."""
    if audience not in AUDIENCES:
        raise ValueError(f"report figures are for one of {', '.join(AUDIENCES)}; got {audience!r}")
    from viewer.plugins import PluginError, contributions

    folder = Path(folder)
    paths: list[Path] = []
    problems: list[str] = []
    for figure in contributions("report_figures"):
        try:
            made = [Path(p) for p in figure.load()(list(records), folder, audience)]
            missing = [str(p) for p in made if not p.is_file()]
            if missing:
                raise RadSightError(f"returned pictures that do not exist: {', '.join(missing)}")
        except Exception as exc:
            if os.environ.get("RADSIGHT_DEBUG"):
                raise
            what = str(exc) if isinstance(exc, (RadSightError, PluginError)) else f"{type(exc).__name__}: {exc}"
            problems.append(f"plugin {figure.plugin}: {figure.what} failed: {' '.join(what.split())}")
            continue
        paths.extend(made)
    return paths, problems
