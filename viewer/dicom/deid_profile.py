"""What the PS3.15 Annex E Basic Application Level Confidentiality Profile does to each attribute
(Table E.1-1), resolved for RadSight's export with the Retain Longitudinal Temporal Information
with Modified Dates Option, and applied to a dataset whose names, IDs, UIDs and dates dicognito
has already replaced (viewer.dicom.deid).

The table itself comes from dicom-anonymizer, which generates it from the standard's own tables
per edition; keeping ~650 rows by hand would rot with every edition."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.tag import BaseTag, Tag

STANDARD_EDITION = "2026c"  # dicom-anonymizer's dicomfields_2026c: Table E.1-1 of DICOM 2026c

_ACTION_OF_CATEGORY = {"D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D",
                       "X_Z_TAGS": "X/Z", "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
DATE_TIME_VRS = ("DA", "DT", "TM")
# The Modified Dates Option keeps dates and times shifted, but not the patient's birth: with it
# the shifted age stays exact, and Patient's Age is removed (X) by the Basic Profile itself.
_NOT_SHIFTED = (Tag("PatientBirthDate"), Tag("PatientBirthTime"))
_PSEUDONYMS = (Tag("PatientID"), Tag("PatientName"))  # Z/D and Z: a consistent dummy is allowed
_CONTENT_SEQUENCE = Tag("ContentSequence")
_TEXT_VALUE = Tag("TextValue")
DUMMY_TEXT = "ANONYMIZED"

PROFILE_CODES = (codes.DCM.BasicApplicationConfidentialityProfile,
                 codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption)


@lru_cache(maxsize=1)
def _table() -> tuple[dict[int, str], tuple[tuple[int, int, int, int, str], ...]]:
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    database = dicom_anonymization_database_selector(f"dicomfields_{STANDARD_EDITION}")
    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for category, action in _ACTION_OF_CATEGORY.items():
        for entry in database[category]:
            if len(entry) == 2:
                exact[Tag(*entry)] = action
            else:  # repeating groups such as Overlay Data (60xx,3000): (group, element, masks)
                masked.append((*entry, action))
    return exact, tuple(masked)


def basic_profile_action(tag: BaseTag) -> str | None:
    """The Basic Profile's action code for an attribute (D, Z, X, U, X/Z, ...), None if unlisted.

    Private attributes are X in the profile; they are removed as a whole before this is asked."""
    exact, masked = _table()
    tag = Tag(tag)
    if tag in exact:
        return exact[tag]
    for group, element, group_mask, element_mask, action in masked:
        if tag.group & group_mask == group and tag.element & element_mask == element:
            return action
    return None


def profile_tags() -> set[int]:
    """Every exactly listed tag (for tests that collect identifying values)."""
    return set(_table()[0])


def _dummy(elem: DataElement):
    """A non-empty value consistent with the VR (action D)."""
    if elem.VR in ("US", "SS", "UL", "SL", "FL", "FD", "IS", "DS", "SV", "UV"):
        return 0
    if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b"\x00\x00"
    if elem.VR == "AS":
        return "000D"
    return DUMMY_TEXT


def apply_basic_profile(ds: Dataset, text_token: Callable[[str], str], in_content: bool = False) -> None:
    """Remove, empty or dummy every listed attribute, recursing into the sequences that stay.

    How each code is resolved (the profile lets an application pick within X/Z/D):
    - X: removed; Z, X/Z: emptied (zero length is valid wherever the profile allows Z);
    - D, X/D, Z/D, X/Z/D: a dummy by VR, since the attribute may be Type 1 in this IOD (Device
      Serial Number is in Enhanced General Equipment, so a SEG would not validate with it empty);
      PN and UI keep dicognito's keyed replacements; a sequence is emptied,
      except the SR Content Sequence, which keeps its tree with each item de-identified and every
      free-text TEXT value replaced by a keyed token (equal texts stay equal: "Nodule 1" at two
      visits maps to one token), so measurements, codes and references survive;
    - U, X/Z/U*: kept, their UIDs already remapped consistently; sequences recursed into;
    - dates and times (DA, DT, TM) with any code: kept as shifted by the Modified Dates Option,
      except the patient's birth date and time;
    - Patient ID and Patient's Name: the patient's pseudonym (Z and Z/D allow a dummy value).
    """
    for tag in list(ds.keys()):
        elem = ds[tag]
        action = basic_profile_action(tag)
        if action is None or action in ("U", "X/Z/U*") or tag in _PSEUDONYMS:
            if in_content and tag == _TEXT_VALUE and elem.value:
                elem.value = text_token(str(elem.value))
            if elem.VR == "SQ":
                for item in elem.value:
                    apply_basic_profile(item, text_token, in_content)
            continue
        if elem.VR in DATE_TIME_VRS and tag not in _NOT_SHIFTED:
            continue
        if action == "X":
            del ds[tag]
        elif "D" in action:
            if elem.VR == "SQ":
                if tag == _CONTENT_SEQUENCE:
                    for item in elem.value:
                        apply_basic_profile(item, text_token, in_content=True)
                else:
                    elem.value = Sequence()
            elif elem.VR not in ("PN", "UI"):
                elem.value = _dummy(elem)
        else:  # Z, X/Z
            elem.value = Sequence() if elem.VR == "SQ" else empty_value_for_VR(elem.VR)


def stamp_method(ds: Dataset, identity_removed: bool, description: str) -> None:
    """Patient Identity Removed, the method text and codes (0012,0062-0064), and (0028,0303).

    Patient Identity Removed is YES only where no burned-in text is suspected: the attribute
    speaks for the pixel data too (PS3.3 C.7.1.1)."""
    ds.PatientIdentityRemoved = "YES" if identity_removed else "NO"
    ds.DeidentificationMethod = description[:64]
    items = []
    for code in PROFILE_CODES:
        item = Dataset()
        item.CodeValue = code.value
        item.CodingSchemeDesignator = code.scheme_designator
        item.CodeMeaning = code.meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
