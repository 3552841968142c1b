"""Synthetic demo studies: one synthetic patient's chest CT at 2-3 visits, with ground truth.

Used by `radsight demo`, by the tests, and to train the small demo models. Everything is made
from analytic shapes and a seed; no real patient data is involved.

    from viewer.demo import generate_demo
    result = generate_demo(out_dir, preset="small", n_visits=3, seed=0)
    result.visits[0].study_dir      # folder of DICOM CT files
"""

from viewer.demo.generate import (BASELINE_DATE, GENERATOR_VERSION, VISIT_SCHEDULES, DemoStudySet,
                                  DemoVisit, generate_demo)
from viewer.demo.grid import PRESETS, RigidMotion, ScanGrid, make_grid

__all__ = ["BASELINE_DATE", "GENERATOR_VERSION", "PRESETS", "VISIT_SCHEDULES", "DemoStudySet",
           "DemoVisit", "RigidMotion", "ScanGrid", "generate_demo", "make_grid"]
