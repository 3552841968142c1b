"""Headless core data model: never imports Qt or VTK."""

from viewer.core.errors import (DicomReadError, FileProblem, GeometryError, RadSightError,
                                SeriesNotFoundError)
from viewer.core.volume import DisplayHints, GeometryWarning, SourceIdentity, Volume

__all__ = ["DicomReadError", "DisplayHints", "FileProblem", "GeometryError", "GeometryWarning",
           "RadSightError", "SeriesNotFoundError", "SourceIdentity", "Volume"]
