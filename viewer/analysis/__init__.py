"""Findings from volumes and AI results: nodule measurement, tracking, guidelines (headless)."""
