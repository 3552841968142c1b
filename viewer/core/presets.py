"""Window/level presets (resources/presets/window_level.json), readable without Qt or VTK."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PRESET_FILE = Path(__file__).resolve().parents[2] / "resources" / "presets" / "window_level.json"


@dataclass(frozen=True)
class WindowPreset:
    key: str
    name: str
    width: float
    level: float


def window_presets(path: Path = PRESET_FILE) -> list[WindowPreset]:
    data = json.loads(Path(path).read_text())
    return [WindowPreset(str(p["key"]), p["name"], float(p["width"]), float(p["level"])) for p in data["presets"]]


def find_preset(name: str) -> WindowPreset:
    for preset in window_presets():
        if preset.name.lower() == name.lower() or preset.key == name:
            return preset
    names = ", ".join(p.name.lower() for p in window_presets())
    raise ValueError(f"unknown window preset {name!r}; choose one of {names}")
