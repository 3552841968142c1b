"""LUNA16-style centre references: `seriesuid,coordX,coordY,coordZ,diameter_mm`, one nodule a
row, centres in LPS mm (the frame of (0020,0032) Image Position (Patient)). The rows may sit in a
.csv file or be quoted inside a text file (a header line followed by the rows); further columns
are ignored. A detection hits such a nodule within diameter/2 of its centre (LUNA16's rule)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from viewer.validation.formats import Attachment
from viewer.validation.lesion import ReferenceError, ReferenceLesion, Target

COLUMNS = ("seriesuid", "coordx", "coordy", "coordz", "diameter_mm")
FORMAT = "LUNA16 CSV"


@dataclass(frozen=True)
class LunaRow:
    series_uid: str
    centre: tuple[float, float, float]
    diameter_mm: float
    line: int


@dataclass(frozen=True)
class LunaCsv:
    path: str
    rows: tuple[LunaRow, ...]
    format: str = FORMAT

    @staticmethod
    def header_line(text: str) -> int | None:
        """Index of the line that starts a LUNA16 table, or None."""
        for n, line in enumerate(text.splitlines()):
            names = [c.strip().lower() for c in line.split(",")]
            if all(c in names for c in COLUMNS):
                return n
        return None

    @classmethod
    def from_file(cls, path: Path | str) -> "LunaCsv":
        path = Path(path)
        try:
            text = path.read_text(errors="replace")
        except OSError as exc:
            raise ReferenceError(f"{path}: cannot be read ({exc.strerror})") from None
        start = cls.header_line(text)
        if start is None:
            raise ReferenceError(f"{path}: no LUNA16 header line ({','.join(COLUMNS)}); "
                                 "write the table with that header")
        lines = text.splitlines()[start:]
        # The table ends at the first line that is not a data row (text around a quoted table).
        table = [lines[0]] + [line for line in _leading_rows(lines[1:])]
        reader = csv.DictReader(io.StringIO("\n".join(table)))
        reader.fieldnames = [f.strip().lower() for f in reader.fieldnames or []]
        rows = []
        for n, row in enumerate(reader, start + 2):
            try:
                centre = (float(row["coordx"]), float(row["coordy"]), float(row["coordz"]))
                diameter = float(row["diameter_mm"])
            except (TypeError, ValueError) as exc:
                raise ReferenceError(f"{path}: line {n}: not a number ({exc}); each row needs "
                                     "coordX, coordY, coordZ and diameter_mm in mm") from None
            if diameter <= 0:
                raise ReferenceError(f"{path}: line {n}: diameter_mm {diameter} must be positive")
            rows.append(LunaRow(row["seriesuid"].strip(), centre, diameter, n))
        if not rows:
            raise ReferenceError(f"{path}: the LUNA16 table has a header but no rows")
        return cls(str(path), tuple(rows))

    def refers_to(self) -> str:
        uids = sorted({r.series_uid for r in self.rows})
        return f"Series Instance UID {', '.join(uids[:3])}{' ...' if len(uids) > 3 else ''}"

    def attach(self, target: Target) -> Attachment | None:
        rows = [r for r in self.rows if r.series_uid == target.series_uid]
        if not rows:
            return None
        out = Attachment(matched_by="Series Instance UID")
        for r in rows:
            if not target.inside(r.centre):
                out.notes.append(f"{self.path}: line {r.line}: nodule at {_xyz(r.centre)} mm ({r.diameter_mm:.1f} mm) "
                                 f"lies outside the series ({target.extent_text()}); left out")
                continue
            out.lesions.append(ReferenceLesion(
                id=f"L{r.line}", source=self.path, format=FORMAT, matched_by=out.matched_by, centre_lps_mm=r.centre,
                diameter_mm=r.diameter_mm, diameter_basis="LUNA16 diameter_mm"))
        return out


def _leading_rows(lines: list[str]):
    for line in lines:
        if line.count(",") < len(COLUMNS) - 1 or not line.strip():
            return
        yield line


def _xyz(point) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in point) + ")"
