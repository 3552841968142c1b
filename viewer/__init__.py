"""RadSight: a desktop radiology viewer.

The packages follow one-way data flow (see README "Architecture"): dicom -> core.Volume ->
inference -> results -> analysis -> render/qt -> report. Only `render` and `qt` may import VTK or Qt.
"""

__version__ = "0.1.0"
