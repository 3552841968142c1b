"""DICOM ingest: scan folders, group and check series, load volumes (no Qt, no VTK)."""

from viewer.dicom.load import load, load_series, open_path
from viewer.dicom.scan import ScanResult, scan
from viewer.dicom.series import Series, group_series

__all__ = ["ScanResult", "Series", "group_series", "load", "load_series", "open_path", "scan"]
