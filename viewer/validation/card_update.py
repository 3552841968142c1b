"""`--update-card`: a validation's figures written into the user's copy of the model card as a
`local_validation` entry (data set description, date, cases, lesions, figures). The bundled
models/ folder is never written: when the user models folder has no copy of the model yet, the
model's folder is copied there first (as `radsight models add` would install it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from viewer.inference.card import ModelCardError
from viewer.inference.registry import BUNDLED, find_card, user_models_dir

FIGURE_KEYS = ("cases", "cases_failed", "lesions", "excluded_findings", "detections", "hits", "false_positives",
               "sensitivity", "false_positives_per_scan", "cpm", "volume_error_pct", "diameter_error_mm", "dice",
               "seconds_per_study", "pointing_game", "dice_per_case")


def user_card_path(card) -> Path:
    """The user's copy of `card` (a ModelCard), made by copying its folder when there is none."""
    folder = Path(card.card_path).parent
    users = user_models_dir()
    if folder.resolve().is_relative_to(users.resolve()):
        return Path(card.card_path)
    target = users / f"{card.id}-{card.version}"
    if not target.exists():
        shutil.copytree(folder, target)
    path = find_card(target)
    if path is None:
        raise ModelCardError(f"{target}: the user copy of {card.id} has no card.json")
    if path.suffix.lower() != ".json":
        raise ModelCardError(f"{path}: local_validation is written into JSON cards only; convert this card to card.json")
    return path


def update_card(card, report: dict, scope: str) -> Path:
    """Append the report's figures to the user copy of `card` as a `local_validation` entry."""
    path = user_card_path(card)
    if Path(path).resolve().is_relative_to(BUNDLED.resolve()):
        raise ModelCardError(f"{path} is a bundled card; refusing to change it")
    data = json.loads(path.read_text())
    figures = report["figures"]
    entry = {
        "scope": scope,
        "date": report["date"],
        "data_set": {"description": report["description"], "cases": figures["cases"], "lesions": figures["lesions"]},
        "method": report["method"],
        "rules": report["rules"],
        "radsight_version": report["radsight_version"],
        "figures": {k: figures[k] for k in FIGURE_KEYS if k in figures},
    }
    if figures.get("froc"):
        entry["figures"]["sensitivity_at"] = figures["froc"]["sensitivity_at"]
    data.setdefault("local_validation", []).append(entry)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
