"""Growth chart of one nodule across time points: volume and mean diameter over dates, VDT said.

Drawn on a matplotlib Figure (not pyplot, whose global state does not belong in a GUI or in
tests); the panel embeds the same figure through matplotlib's Qt canvas, and `save_chart`
writes PNG or SVG from it. A track is a sequence of time points, each a dict or object with
`volume_mm3`, `mean_diameter_mm` and `date` (datetime.date or "YYYYMMDD"/ISO text) or `days`
(since the first point); `track_from_record` makes one from a NODULE record: all its visits
("history") or, lacking those, the record and its prior.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from matplotlib.figure import Figure

from viewer.analysis.growth import growth

FORMATS = (".png", ".svg")


@dataclass(frozen=True)
class TimePoint:
    days: float                  # since the first time point
    volume_mm3: float
    mean_diameter_mm: float | None  # None where not known (a NODULE prior carries only its volume)
    date: date | None = None


def _date(value) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    return datetime.strptime(text, "%Y%m%d").date() if text.isdigit() else date.fromisoformat(text[:10])


def _field(point, name: str):
    return point.get(name) if isinstance(point, dict) else getattr(point, name, None)


def time_points(track) -> list[TimePoint]:
    """The track's points sorted by time, with days counted from the first."""
    raw = []
    for p in track:
        when = _date(_field(p, "date") or _field(p, "study_date"))
        days = _field(p, "days")
        diameter = _field(p, "mean_diameter_mm")
        raw.append((when, None if days is None else float(days), float(_field(p, "volume_mm3")),
                    None if diameter is None else float(diameter)))
    if not raw:
        raise ValueError("a growth chart needs at least one time point; the track is empty")
    if all(r[0] is not None for r in raw):
        raw.sort(key=lambda r: r[0])
        first = raw[0][0]
        return [TimePoint(float((when - first).days), v, d, when) for when, _, v, d in raw]
    if any(r[1] is None for r in raw):
        raise ValueError("every time point of a growth chart needs a date or a number of days")
    raw.sort(key=lambda r: r[1])
    return [TimePoint(days - raw[0][1], v, d, when) for when, days, v, d in raw]


def track_from_record(record: dict, study_date=None) -> list[TimePoint]:
    """Every visit of the nodule from the record's "history" (one point per visit, as `radsight
    analyze --prior` writes it) when it has one; else the current measurement and, when the record
    has one, its prior (`days` earlier)."""
    history = record.get("history") or []
    if history:
        return time_points([{"date": h.get("date"), "days": h.get("day"), "volume_mm3": h["volume_mm3"],
                             "mean_diameter_mm": h.get("mean_diameter_mm")} for h in history])
    current = _date(study_date)
    points = []
    prior = record.get("prior")
    if prior:
        days = float(prior["days"])
        diameter = prior.get("mean_diameter_mm")
        points.append(TimePoint(0.0, float(prior["volume_mm3"]), None if diameter is None else float(diameter),
                                None if current is None else current - timedelta(days=days)))
        points.append(TimePoint(days, float(record["volume_mm3"]), float(record["mean_diameter_mm"]), current))
    else:
        points.append(TimePoint(0.0, float(record["volume_mm3"]), float(record["mean_diameter_mm"]), current))
    return points


def _vdt_between(a: TimePoint, b: TimePoint) -> str:
    d_b = b.mean_diameter_mm or 0.0
    g = growth(b.days - a.days, a.volume_mm3, b.volume_mm3, d_b if a.mean_diameter_mm is None else a.mean_diameter_mm, d_b)
    change = f"volume {g.volume_change_pct:+.0f}% in {b.days - a.days:.0f} days"
    if g.vdt_days is None:
        return f"{change}; no change in volume"
    if g.vdt_days < 0:  # a negative doubling time is a halving time: say so rather than print "-18000"
        return f"{change}, halving time {-g.vdt_days:.0f} days; {g.assessment}"
    low, high = g.vdt_interval_days

    def days(v: float) -> str:
        return "no growth" if math.isinf(v) else f"{v:.0f}"

    return f"VDT {g.vdt_days:.0f} days ({days(low)} to {days(high)}); {change}; {g.assessment}"


def vdt_text(points: list[TimePoint]) -> str:
    """The volume doubling time between the last two points, with its interval, in words; with more
    than two points a second line gives the overall one from the first point to the last."""
    if len(points) < 2:
        return "one time point: no volume doubling time yet"
    a, b = points[-2], points[-1]
    if b.days <= a.days:
        return "the last two time points have the same date: no volume doubling time"
    if len(points) == 2:
        return _vdt_between(a, b)
    return (f"Last interval: {_vdt_between(a, b)}\n"
            f"Overall, first to last of {len(points)} time points: {_vdt_between(points[0], b)}")


def draw_chart(track, title: str = "", figure: Figure | None = None, note: bool = True) -> Figure:
    """Volume (left axis) and mean diameter (right axis) over time, the VDT and its assessment in a
    footnote (`note`; left out of charts shown to patients, whose radiologist explains it)."""
    points = time_points(track) if not (track and isinstance(track[0], TimePoint)) else list(track)
    figure = figure or Figure(figsize=(5.0, 3.2), dpi=100)
    figure.clear()
    ax = figure.add_subplot(1, 1, 1)
    dated = all(p.date is not None for p in points)
    x = [p.date for p in points] if dated else [p.days for p in points]
    ax.plot(x, [p.volume_mm3 for p in points], "o-", color="tab:blue", label="volume")
    ax.set_ylabel("volume (mm³)", color="tab:blue")
    ax.set_xlabel("study date" if dated else "days since first time point")
    right = ax.twinx()
    known = [(xi, p.mean_diameter_mm) for xi, p in zip(x, points) if p.mean_diameter_mm is not None]
    right.plot([k[0] for k in known], [k[1] for k in known], "s--", color="tab:orange", label="mean diameter")
    right.set_ylabel("mean diameter (mm)", color="tab:orange")
    hi = max(p.volume_mm3 for p in points)
    ax.set_ylim(0, hi * 1.25 if hi > 0 else 1)
    dmax = max([k[1] for k in known] + [0.0])
    right.set_ylim(0, dmax * 1.25 if dmax > 0 else 1)
    last = points[-1]
    ax.annotate(f"{last.volume_mm3:.0f} mm³", (x[-1], last.volume_mm3), textcoords="offset points", xytext=(-10, 8),
                ha="right", fontsize=8, color="tab:blue")
    if dated:  # one tick per visit, labelled with its study date
        ax.set_xticks(x, [d.isoformat() for d in x])
        figure.autofmt_xdate()
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if not note:
        figure.tight_layout()
        return figure
    text = "\n".join(textwrap.fill(line, 86) for line in vdt_text(points).splitlines())
    figure.text(0.01, 0.01, text, fontsize=7, va="bottom")
    figure.tight_layout(rect=(0, 0.02 + 0.037 * (text.count("\n") + 1), 1, 1))
    return figure


def save_chart(track, path: Path | str, title: str = "", note: bool = True) -> Path:
    """Write the chart as PNG or SVG, chosen by the file's suffix."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot write a growth chart as {path.name}: the name must end in .png or .svg")
    figure = draw_chart(track, title, note=note)
    figure.savefig(path, format=path.suffix.lower()[1:], dpi=150)
    return path


MAX_REPORT_CHARTS = 4


def report_figures(records: list[dict], folder: Path | str, audience: str = "report") -> list[Path]:
    """The plugin's `report_figures` contribution: a growth chart of each nodule seen at more
    than one visit (largest first, at most MAX_REPORT_CHARTS, so the PDF stays readable). For
    the "patient" audience the chart has plain titles and no VDT assessment."""
    persisting = [r for r in records if len(r.get("history") or []) > 1]
    persisting.sort(key=lambda r: -float(r.get("volume_mm3") or 0.0))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for record in persisting[:MAX_REPORT_CHARTS]:
        visits = len(record["history"])
        patient = audience == "patient"
        title = (f"Size of the spot over {visits} scans" if patient
                 else f"Nodule {record['id']} ({record.get('type', 'nodule')}), {visits} visits")
        paths.append(save_chart(track_from_record(record), folder / f"growth-{record['id']}.png", title,
                                note=not patient))
    return paths
