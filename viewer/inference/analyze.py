"""`radsight analyze`: run the applicable segmentation models on a study, write DICOM SEG, record
the results in the store. Nodules and their longitudinal fields are added by plugin analyses
(the lung-nodule plugin) through viewer.plugins.study_analysis.

Every model that applies is first checked against its card's validated domain
(viewer.inference.domain): each model entry carries its "domain" check, the SEG says when it is
outside, and the top-level "domain" sums it up for everything shown from this analysis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from viewer.core.errors import RadSightError
from viewer.dicom import load_series, open_path
from viewer.dicom.seg import write_seg
from viewer.inference.domain import check_study, outside_summary
from viewer.inference.registry import Registry, discover
from viewer.inference.run import segment


def analyze(path: Path | str, out: Path | str, model_ids: list[str] | None = None, store=None,
            registry: Registry | None = None, provider: str | None = None,
            progress: Callable[[int, int, str], None] | None = None) -> dict:
    """JSON-ready summary (DESIGN.md contract) of the models' part: study, models that ran, outputs;
    "nodules" starts empty and is filled by the plugin analyses that run after this."""
    series_list, result = open_path(path)
    if not series_list:
        raise RadSightError(f"{path}: no image series to analyse ({len(result.problems)} unreadable files)")
    series = max(series_list, key=lambda s: len(s.records))
    volume = load_series(series)
    registry = registry or discover()
    if model_ids:
        cards = [registry.get(m) for m in model_ids]
    else:
        cards = registry.for_modality(volume.source.modality, task="segmentation")
        if not cards:
            raise RadSightError(f"no installed segmentation model applies to {volume.source.modality or 'this'} "
                                "series (radsight models list)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if store is not None:
        store.import_scan(series_list, result)
        store.study_opened(series.key, "radsight analyze")
    # The classifiers the nodule plugin runs on this study are checked too: their results are shown from it.
    checked = cards + [c for c in registry.for_modality(volume.source.modality, task="classification")
                       if c.id not in {k.id for k in cards}]
    checks = check_study(checked, volume)
    models, segs = [], []
    for card in cards:
        if card.task != "segmentation":
            continue  # classifiers run on points (nodules) in the nodule plugin
        check = checks[card.id]
        mask = segment(volume, card, provider=provider, progress=progress)
        seg_path = write_seg(mask, series, out / f"seg-{card.id}-{card.version}.dcm",
                             outside_domain=None if check.within else " ".join(check.reasons))
        summary = {"labels": {info.name: {"voxels": int((mask.labels.voxels == info.value).sum()),
                                          "confidence": mask.label_confidence(info.value)}
                              for info in mask.label_info},
                   "domain": check.to_json()}
        if store is not None:
            store.add_result(series.key, "seg", card.id, card.version, seg_path, mask.provider, summary)
        models.append({"id": card.id, "version": card.version, "provider": mask.provider, **summary})
        segs.append(str(seg_path))
    return {"study_uid": series.first.study_uid, "series_uid": series.first.series_uid, "series_key": series.key,
            "models": models, "nodules": [], "outputs": {"seg": segs},
            "domain": {"within": all(c.within for c in checks.values()),
                       "summary": outside_summary(checks.values()),
                       "checks": [c.to_json() for c in checks.values()]},
            "warnings": [w.message for w in volume.warnings]}
