"""Report templates: sections of typed fields (text, choice, number with a UCUM unit, date, finding
lists), read from YAML files (resources/templates/README.md documents the format).

A template is checked completely when it is loaded, so a field that exists in a template can
always be filled, checked and exported; a reader's value is checked against its field before it
reaches a report.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from viewer.core.paths import user_data_dir
from viewer.report.model import ReportError

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "resources" / "templates"
FIELD_TYPES = ("text", "choice", "number", "date", "findings")

# The named results a field may be prefilled from (viewer.report.prefill fills each) and the
# field types each suits.
PREFILL_SOURCES: dict[str, tuple[str, ...]] = {
    "nodules": ("findings",),
    "nodules.count": ("number",),
    "nodules.largest_mean_diameter_mm": ("number",),
    "lung_rads.category": ("choice", "text"),
    "lung_rads.management": ("text",),
    "lung_rads.rule": ("text",),
    "assessment.guideline": ("text",),
    "assessment.category": ("text", "choice"),
    "assessment.management": ("text",),
    "study.date": ("date",),
    "comparison": ("text",),
    "ai.models": ("text",),
}
RESERVED_IDS = ("free_text",)  # report parts that are not template fields
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_SCHEME = re.compile(r"^[A-Z][A-Z0-9_.-]*$")
_FIELD_KEYS = {"id", "label", "type", "unit", "choices", "required", "concept", "prefill", "default",
               "minimum", "maximum", "help"}


@dataclass(frozen=True)
class CodedConcept:
    """A code as DICOM writes it: coding scheme designator (DCM, SCT, LN, UCUM...), value, meaning."""

    scheme: str
    value: str
    meaning: str


@dataclass(frozen=True)
class TemplateField:
    id: str
    label: str
    type: str
    unit: str | None = None             # UCUM, number fields only
    choices: tuple[str, ...] = ()       # choice fields only
    required: bool = False              # must have a value before the report is signed
    concept: CodedConcept | None = None
    prefill: str | None = None          # a PREFILL_SOURCES name
    default: Any = None                 # boilerplate shown before anything is typed
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    def check(self, value: Any) -> Any:
        """The value as the report keeps it (choices in their template spelling, numbers as float,
        dates as ISO YYYY-MM-DD); ReportError naming the field and what it takes otherwise."""
        if self.type == "findings":
            raise ReportError(f"field {self.id!r} is a list of findings: confirm or reject its findings "
                              "instead of setting a value")
        if self.type == "text":
            if not isinstance(value, str):
                raise ReportError(f"field {self.id!r} takes text; got {type(value).__name__} {value!r}")
            return value
        if self.type == "choice":
            text = str(value).strip()
            for choice in self.choices:
                if text.casefold() == choice.casefold():
                    return choice
            raise ReportError(f"field {self.id!r} takes one of {', '.join(self.choices)}; got {value!r}")
        if self.type == "number":
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not math.isfinite(number):
                raise ReportError(f"field {self.id!r} takes a number in {self.unit}; got {value!r}")
            if self.minimum is not None and number < self.minimum or self.maximum is not None and number > self.maximum:
                raise ReportError(f"field {self.id!r} takes a number from {_bound(self.minimum)} to "
                                  f"{_bound(self.maximum)} {self.unit}; got {number:g}")
            return number
        return _check_date(self.id, value)


def _bound(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


def _check_date(field_id: str, value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    if re.fullmatch(r"\d{8}", text):  # DICOM DA, as (0008,0020) Study Date writes it
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ReportError(f"field {field_id!r} takes a date as YYYY-MM-DD; got {value!r}") from None


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    fields: tuple[TemplateField, ...]
    concept: CodedConcept | None = None


@dataclass(frozen=True)
class Template:
    """A checked template; build it with from_file or from_dict."""

    id: str
    title: str
    version: str
    sections: tuple[Section, ...]
    description: str = ""
    path: str | None = None

    @property
    def fields(self) -> tuple[TemplateField, ...]:
        return tuple(f for s in self.sections for f in s.fields)

    def field(self, field_id: str) -> TemplateField:
        for f in self.fields:
            if f.id == field_id:
                return f
        raise ReportError(f"template {self.id} has no field {field_id!r}; its fields are "
                          f"{', '.join(f.id for f in self.fields)}")

    @staticmethod
    def from_file(path: Path | str) -> Template:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ReportError(f"{path}: cannot read the template: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ReportError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
        return Template.from_dict(data, origin=str(path))

    @staticmethod
    def from_dict(data: Any, origin: str = "template") -> Template:
        """Every key checked; the error names the file, the section and the field."""
        if not isinstance(data, dict):
            raise ReportError(f"{origin}: a template is a mapping with id, title, version and sections; "
                              f"got {type(data).__name__}")
        unknown = set(data) - {"id", "title", "version", "description", "sections"}
        if unknown:
            raise ReportError(f"{origin}: unknown template keys {', '.join(sorted(unknown))}")
        template_id = _text(data, "id", origin, pattern=re.compile(r"^[a-z0-9][a-z0-9._-]*$"))
        title = _text(data, "title", origin)
        version = _text(data, "version", origin)
        sections_data = data.get("sections")
        if not isinstance(sections_data, list) or not sections_data:
            raise ReportError(f"{origin}: template {template_id} needs a non-empty list of sections")
        sections, seen = [], set()
        for i, s in enumerate(sections_data, 1):
            where = f"{origin}: section {i}"
            if not isinstance(s, dict):
                raise ReportError(f"{where}: a section is a mapping with id, title and fields")
            unknown = set(s) - {"id", "title", "fields", "concept"}
            if unknown:
                raise ReportError(f"{where}: unknown section keys {', '.join(sorted(unknown))}")
            section_id = _text(s, "id", where, pattern=_ID)
            where = f"{origin}: section {section_id!r}"
            fields_data = s.get("fields")
            if not isinstance(fields_data, list) or not fields_data:
                raise ReportError(f"{where}: needs a non-empty list of fields")
            fields = []
            for j, f in enumerate(fields_data, 1):
                field_ = _field(f, f"{where} field {j}")
                if field_.id in seen:
                    raise ReportError(f"{where} field {field_.id!r}: the id is used twice in the template")
                seen.add(field_.id)
                fields.append(field_)
            sections.append(Section(section_id, _text(s, "title", where), tuple(fields),
                                    _concept(s.get("concept"), where)))
        return Template(template_id, title, version, tuple(sections), str(data.get("description") or "").strip(),
                        origin if origin != "template" else None)


def _text(data: dict, key: str, where: str, pattern: re.Pattern | None = None) -> str:
    value = data.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "version":
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ReportError(f"{where}: {key!r} is required and must be text; got {value!r}")
    if pattern is not None and not pattern.match(value):
        raise ReportError(f"{where}: {key} {value!r} must be lower-case letters, digits and "
                          f"{'_' if pattern is _ID else '._-'}, starting with a letter")
    return value.strip()


def _concept(data: Any, where: str) -> CodedConcept | None:
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) != {"scheme", "value", "meaning"}:
        raise ReportError(f"{where}: concept needs exactly scheme, value and meaning; got {data!r}")
    scheme, value, meaning = (str(data[k]).strip() for k in ("scheme", "value", "meaning"))
    if not _SCHEME.match(scheme) or not value or not meaning:
        raise ReportError(f"{where}: concept scheme must be a DICOM coding scheme designator (DCM, SCT, LN...) "
                          f"and value and meaning non-empty; got {data!r}")
    return CodedConcept(scheme, value, meaning)


def _field(data: Any, where: str) -> TemplateField:
    if not isinstance(data, dict):
        raise ReportError(f"{where}: a field is a mapping with id, label and type")
    field_id = _text(data, "id", where, pattern=_ID)
    where = where.rsplit(" field ", 1)[0] + f" field {field_id!r}"
    unknown = set(data) - _FIELD_KEYS
    if unknown:
        raise ReportError(f"{where}: unknown keys {', '.join(sorted(unknown))}; a field takes "
                          f"{', '.join(sorted(_FIELD_KEYS))}")
    if field_id in RESERVED_IDS:
        raise ReportError(f"{where}: {field_id!r} is reserved for the report's own free text")
    kind = data.get("type")
    if kind not in FIELD_TYPES:
        raise ReportError(f"{where}: type must be one of {', '.join(FIELD_TYPES)}; got {kind!r}")
    unit = data.get("unit")
    if kind == "number" and (not isinstance(unit, str) or not unit.strip()):
        raise ReportError(f"{where}: a number field needs its unit (UCUM, e.g. mm, mm3, d, {{nodules}})")
    if kind != "number" and unit is not None:
        raise ReportError(f"{where}: only number fields have a unit; this one is {kind}")
    choices = data.get("choices")
    if kind == "choice":
        if not isinstance(choices, list) or len(choices) < 2 or len({str(c).casefold() for c in choices}) != len(choices):
            raise ReportError(f"{where}: a choice field needs a list of two or more distinct choices; got {choices!r}")
        choices = tuple(str(c) for c in choices)
    elif choices is not None:
        raise ReportError(f"{where}: only choice fields have choices; this one is {kind}")
    prefill = data.get("prefill")
    if prefill is not None:
        if prefill not in PREFILL_SOURCES:
            raise ReportError(f"{where}: prefill {prefill!r} is not one of {', '.join(PREFILL_SOURCES)}")
        if kind not in PREFILL_SOURCES[prefill]:
            raise ReportError(f"{where}: prefill {prefill!r} fills {' or '.join(PREFILL_SOURCES[prefill])} "
                              f"fields; this one is {kind}")
    if kind == "findings" and prefill not in (None, "nodules"):
        raise ReportError(f"{where}: a findings field is prefilled from 'nodules' or not at all")
    required = data.get("required", False)
    if not isinstance(required, bool):
        raise ReportError(f"{where}: required must be true or false; got {required!r}")
    bounds = {}
    for key in ("minimum", "maximum"):
        if data.get(key) is not None:
            if kind != "number" or isinstance(data[key], bool) or not isinstance(data[key], (int, float)):
                raise ReportError(f"{where}: {key} is a number and only for number fields; got {data[key]!r}")
            bounds[key] = float(data[key])
    field_ = TemplateField(field_id, _text(data, "label", where), kind, unit.strip() if unit else None,
                           choices or (), required, _concept(data.get("concept"), where), prefill,
                           None, bounds.get("minimum"), bounds.get("maximum"), str(data.get("help") or ""))
    if data.get("default") is not None:
        if kind == "findings":
            raise ReportError(f"{where}: a findings field has no default")
        try:
            default = field_.check(data["default"])
        except ReportError as exc:
            raise ReportError(f"{where}: default: {exc}") from None
        field_ = TemplateField(**{**field_.__dict__, "default": default})
    return field_


def template_dirs() -> list[Path]:
    """The bundled templates, then the user's own (user data folder/templates)."""
    return [TEMPLATE_DIR, user_data_dir() / "templates"]


def available_templates(dirs: list[Path] | None = None) -> dict[str, Template]:
    """Every template by id. A broken bundled template is an error; a broken user template is
    skipped with a warning naming its file, so one bad file never hides the others."""
    found: dict[str, Template] = {}
    for folder in dirs if dirs is not None else template_dirs():
        bundled = folder == TEMPLATE_DIR
        for path in sorted(Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []:
            try:
                template = Template.from_file(path)
            except ReportError as exc:
                if bundled:
                    raise
                log.warning("report template skipped: %s", exc)
                continue
            if template.id in found and bundled:
                raise ReportError(f"{path}: template id {template.id} is also used by {found[template.id].path}")
            found[template.id] = template  # a user template of the same id overrides the bundled one
    return found


def find_template(template_id: str, dirs: list[Path] | None = None) -> Template:
    templates = available_templates(dirs)
    if template_id not in templates:
        raise ReportError(f"no report template {template_id!r}; available: {', '.join(sorted(templates))}")
    return templates[template_id]


LUNG_SCREENING = "lung-screening-ldct-lungrads-2022"
CT_CHEST = "ct-chest-general"
