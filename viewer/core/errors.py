"""Errors and problems that reach the user: each names the file or object and says what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class RadSightError(Exception):
    """Base of every error RadSight shows to a user as a one-line message (no traceback)."""


class DicomReadError(RadSightError):
    """A file could not be read as the DICOM object it claims to be."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = " ".join(reason.split())  # one line, whatever a decoder printed
        super().__init__(f"{self.path}: {reason}")


class GeometryError(RadSightError):
    """Slices cannot be combined into one volume (the message says why and with which numbers)."""


class SeriesNotFoundError(RadSightError):
    """The requested series is not among those found."""


@dataclass(frozen=True)
class FileProblem:
    """A file skipped during a scan, with a one-line reason that names what was wrong."""

    path: Path
    reason: str

    def to_json(self) -> dict:
        return {"file": str(self.path), "reason": self.reason}
