"""Where models are found: the bundled models/ folder, the user's models folder, plugins.

A folder holding `card.json` (or card.yaml) and its model file is one model. A card that does
not validate is listed as a problem with its reason and never stops the others.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from viewer.core.paths import user_data_dir
from viewer.inference.card import ModelCard, ModelCardError

BUNDLED = Path(__file__).resolve().parents[2] / "models"
CARD_NAMES = ("card.json", "card.yaml", "card.yml")


def user_models_dir() -> Path:
    path = user_data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Registry:
    cards: list[ModelCard] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)

    def get(self, model_id: str) -> ModelCard:
        matches = [c for c in self.cards if c.id == model_id]
        if not matches:
            known = ", ".join(sorted(c.id for c in self.cards)) or "none"
            raise ModelCardError(f"no model with id {model_id!r} (installed: {known})")
        return max(matches, key=lambda c: _version_key(c.version))

    def for_modality(self, modality: str | None, task: str | None = None) -> list[ModelCard]:
        return [c for c in self.cards if c.applies_to(modality) and (task is None or c.task == task)]


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.replace("-", ".").split("."))


def find_card(folder: Path) -> Path | None:
    return next((folder / n for n in CARD_NAMES if (folder / n).is_file()), None)


def discover(extra_folders: list[Path] | None = None) -> Registry:
    """Every model under the bundled and user folders (one level deep), newest version first."""
    registry = Registry()
    roots = [BUNDLED, user_models_dir()] + list(extra_folders or [])
    folders = [folder for root in roots if root.is_dir()
               for folder in sorted(p for p in root.iterdir() if p.is_dir())]
    folders += plugin_model_folders()
    for folder in folders:
        card_path = find_card(folder)
        if card_path is None:
            continue
        try:
            registry.cards.append(ModelCard.from_file(card_path))
        except ModelCardError as exc:
            registry.problems.append((card_path, str(exc)))
    return registry


def plugin_model_folders() -> list[Path]:
    """Model folders that plugins contribute (manifest `models`): a contributed path is one model
    folder (it holds a card) or a folder of model folders. Reading manifests imports no plugin code."""
    from viewer.plugins import contributions

    folders: list[Path] = []
    for contribution in contributions("models"):
        path = contribution.path
        if path is None or not path.is_dir():
            continue
        if find_card(path) is not None:
            folders.append(path)
        else:
            folders += sorted(p for p in path.iterdir() if p.is_dir())
    return folders


def validate(folder: Path | str) -> ModelCard:
    """Check a model folder completely: card fields, file hash, and that ONNX Runtime loads it
    with the inputs and outputs the card names."""
    from viewer.inference.session import ModelSession

    folder = Path(folder)
    card_path = find_card(folder) if folder.is_dir() else folder
    if card_path is None:
        raise ModelCardError(f"{folder}: no card.json or card.yaml in this folder")
    card = ModelCard.from_file(card_path)
    ModelSession(card, provider="cpu")
    return card


def add(folder: Path | str) -> Path:
    """Validate a model folder and copy it into the user's models folder as <id>-<version>."""
    card = validate(folder)
    target = user_models_dir() / f"{card.id}-{card.version}"
    if target.exists():
        raise ModelCardError(f"model {card.id} {card.version} is already installed at {target}")
    source = Path(folder) if Path(folder).is_dir() else Path(folder).parent
    shutil.copytree(source, target)
    return target
