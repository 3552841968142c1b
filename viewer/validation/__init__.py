"""`radsight validate`: a model or the nodule detection against reference annotations (FROC,
LUNA16 CPM, volume and diameter error, Dice, pointing game), headless (no Qt, no VTK).

    lesion.py      ReferenceLesion and Target (the series a reference is attached to)
    formats/       one reader per reference format, each a checked named constructor
    discovery.py   cases and reference files under a folder, and which reference belongs where
    matching.py    detections against lesions (hits, duplicates, false positives)
    froc.py        FROC curve and the LUNA16 CPM
    run.py         the validation run over every case, and its figures
    thumbnails.py  axial crops with outlines (matplotlib) and the FROC plot
    html.py        validation.html
    card_update.py `local_validation` in the user's copy of a model card
    demo_set.py    synthetic demo studies with their ground truth as a reference file
"""
