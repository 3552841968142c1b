"""Structured reports: the report model, templates, prefill, signing and SR/PDF export (no Qt, no VTK)."""
