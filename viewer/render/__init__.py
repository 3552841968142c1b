"""VTK rendering of volumes, masks and heatmaps; depends on the core, never the reverse."""
