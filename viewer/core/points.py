"""Points typed by people: "X,Y,Z" in patient LPS millimetres, as every `--at` option takes them."""

from __future__ import annotations

from viewer.core.errors import RadSightError


def parse_point(text: str, option: str = "--at") -> tuple[float, float, float]:
    """Three numbers separated by commas (negative values allowed: pass them as --at=-1,2,3)."""
    try:
        x, y, z = (float(v) for v in text.split(","))
    except ValueError:
        raise RadSightError(f"{option} needs three numbers X,Y,Z in LPS mm; got {text!r}") from None
    return x, y, z
