"""Window/level presets: the built-in ones (resources/presets/window_level.json) and the user's own
(window_presets.json in the user data folder), readable without Qt or VTK."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from viewer.core.paths import user_data_dir

PRESET_FILE = Path(__file__).resolve().parents[2] / "resources" / "presets" / "window_level.json"
USER_PRESET_NAME = "window_presets.json"


@dataclass(frozen=True)
class WindowPreset:
    key: str
    name: str
    width: float
    level: float


def _read(path: Path) -> list[WindowPreset]:
    data = json.loads(Path(path).read_text())
    return [WindowPreset(str(p["key"]), p["name"], float(p["width"]), float(p["level"])) for p in data["presets"]]


def user_presets() -> list[WindowPreset]:
    path = user_data_dir() / USER_PRESET_NAME
    if not path.exists():
        return []
    try:
        return _read(path)
    except (ValueError, KeyError, TypeError):
        return []  # a damaged user file must not stop the viewer; built-ins remain


def window_presets(path: Path = PRESET_FILE) -> list[WindowPreset]:
    """Built-in presets, then the user's (a user preset with a built-in's key replaces it)."""
    mine = user_presets()
    taken = {p.key for p in mine}
    return [p for p in _read(path) if p.key not in taken] + mine


def save_user_preset(name: str, width: float, level: float, key: str | None = None) -> WindowPreset:
    """Keep a preset for next time; without a key, the first free of 6-9 and 0."""
    mine = user_presets()
    if key is None:
        used = {p.key for p in window_presets()}
        free = [k for k in "67890" if k not in used]
        if not free:
            raise ValueError("all preset keys are taken; give a key to replace one")
        key = free[0]
    preset = WindowPreset(key, name, float(width), float(level))
    mine = [p for p in mine if p.key != key] + [preset]
    (user_data_dir() / USER_PRESET_NAME).write_text(json.dumps({"presets": [asdict(p) for p in mine]}, indent=2))
    return preset


def find_preset(name: str) -> WindowPreset:
    for preset in window_presets():
        if preset.name.lower() == name.lower() or preset.key == name:
            return preset
    names = ", ".join(p.name.lower() for p in window_presets())
    raise ValueError(f"unknown window preset {name!r}; choose one of {names}")
