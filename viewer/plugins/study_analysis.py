"""One study analysed as `radsight analyze` does it: the priors checked, the models run, then every
plugin analysis (the lung-nodule plugin's detection and tracking) merged into one JSON dict.

`radsight analyze` and `radsight demo` both call `analyze_study`, so the demo's visits are stored
and tracked exactly as a user's would be.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from viewer.core.errors import RadSightError

Progress = Callable[[int, int, str], None]
ErrorReport = Callable[[str], None]  # receives one line naming the failing plugin


def check_priors(current: Path | str, priors: Sequence[Path | str]) -> None:
    """Refuse a wrong prior (another patient, a later date, another body region) before any model runs."""
    if not priors:
        return
    from viewer.analysis.timepoint import check_pair
    from viewer.dicom.study_facts import read_study_facts

    facts = read_study_facts(current)
    for prior in priors:
        check_pair(read_study_facts(prior), facts)


def run_plugin_analyses(study_path: Path | str, data: dict, out: Path, *, prior_paths: Sequence[Path | str] = (),
                        store=None, provider: str | None = None, progress: Progress | None = None,
                        options: dict | None = None, report: ErrorReport | None = None) -> list[dict]:
    """Each plugin analysis after the models, its dict merged into `data`. A failing analysis is
    reported (one line naming the plugin) and listed in data["analysis_errors"]; the others still
    run. With RADSIGHT_DEBUG set the failure is raised instead, with its traceback."""
    from viewer.plugins import PluginError, contributions
    from viewer.plugins.analysis_context import AnalysisContext, merge_result

    analyses = contributions("analyses")
    if not analyses:
        return []
    from viewer.dicom import load

    volume = load(study_path, series_uid=data.get("series_uid"))
    context = AnalysisContext(
        volume=volume, study_path=Path(study_path), out_dir=out, prior_paths=[Path(p) for p in prior_paths],
        seg_paths={m["id"]: Path(p) for m, p in zip(data["models"], data["outputs"].get("seg", []))},
        models=data["models"], provider=provider, progress=progress, store=store, summary=data,
        options=dict(options or {"guideline": "lung-rads"}))
    errors = []
    for analysis in analyses:
        try:
            result = analysis.load()(context)
            if not isinstance(result, dict):
                raise TypeError(f"returned a {type(result).__name__}, not a dict")
        except Exception as exc:
            if os.environ.get("RADSIGHT_DEBUG"):
                raise
            if isinstance(exc, PluginError):  # its message names the plugin already
                reason = str(exc)
            else:
                what = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RadSightError) else str(exc)
                reason = f"plugin {analysis.plugin}: {analysis.what} failed: {what}"
            errors.append({"plugin": analysis.plugin, "analysis": analysis.id, "error": " ".join(reason.split())})
            if report is not None:
                report(errors[-1]["error"])
            continue
        merge_result(data, result)
    if errors:
        data["analysis_errors"] = errors
    return errors


def analyze_study(path: Path | str, out: Path | str, *, priors: Sequence[Path | str] = (),
                  model_ids: list[str] | None = None, store=None, registry=None, provider: str | None = None,
                  progress: Progress | None = None, options: dict | None = None,
                  report: ErrorReport | None = None) -> dict:
    """The `radsight analyze` JSON of one study with its older studies as priors; plugin failures
    are in its "analysis_errors" (and reported), wrong priors and model problems raise."""
    from viewer.inference.analyze import analyze

    check_priors(path, priors)
    out = Path(out)
    data = analyze(path, out, model_ids, store=store, registry=registry, provider=provider, progress=progress)
    run_plugin_analyses(path, data, out, prior_paths=priors, store=store, provider=provider, progress=progress,
                        options=options, report=report)
    return data
