"""IHE MRRT report templates (the format of RSNA's RadReport library) turned into RadSight
templates (resources/templates/README.md), so a department's templates can be used as they are.

An MRRT template is an HTML5 file: `<section data-section-name>` blocks (nested sections are
flattened, their titles joined), form fields (`input`, `select`, `textarea`) with
`data-field-type` (TEXT, NUMBER, SELECTION, DATE, TIME, BOOLEAN) and `<label for>`, and coded
content in `<script type="text/xml"><template_attributes>`, whose `coded_content` entries bind a
field id (ORIGTXT) to a code (RAD TF-3 8.1). No Python library reads MRRT, so it is parsed here
with the standard library's HTML and XML parsers; nothing in the file is executed or fetched.

What RadSight's format cannot hold is said, not dropped silently: a multiple selection becomes a
text field that lists its options in the help; a number without a unit gets the UCUM unity "1";
each such change is listed in `MrrtImport.notes`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import yaml

from viewer.report.model import ReportError
from viewer.report.templates import Template

# MRRT field types and the RadSight type each becomes (TIME and BOOLEAN have no own type here).
MRRT_TYPES = {"TEXT": "text", "NUMBER": "number", "SELECTION": "choice", "DATE": "date", "TIME": "text",
              "BOOLEAN": "choice", "CHECKBOX": "choice"}
HTML_INPUT_TYPES = {"text": "TEXT", "number": "NUMBER", "date": "DATE", "time": "TIME", "checkbox": "BOOLEAN",
                    "radio": "SELECTION"}
# Units as templates print them after a number field, in UCUM.
UNITS = {"mm": "mm", "cm": "cm", "m": "m", "ml": "mL", "cc": "cm3", "cm3": "cm3", "mm3": "mm3", "mm2": "mm2",
         "cm2": "cm2", "hu": "[hnsf'U]", "%": "%", "days": "d", "day": "d", "d": "d", "weeks": "wk", "months": "mo",
         "years": "a", "kg": "kg", "g": "g", "mg": "mg", "bpm": "/min", "mmhg": "mm[Hg]", "s": "s", "ms": "ms"}
_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass
class MrrtImport:
    """The template as a dict (what its YAML holds) and what had to change to fit RadSight's format."""

    data: dict
    notes: list[str] = field(default_factory=list)


@dataclass
class _Field:
    element: str
    attrs: dict
    section: list[str]
    options: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""          # a textarea's default text, or an option being read
    after: str = ""         # text right after the field (where units are written)
    before: str = ""        # the text just before it (a radio group's question)


def _slug(text: str, prefix: str) -> str:
    slug = _SLUG.sub("_", text.casefold()).strip("_")
    if not slug or not slug[0].isalpha():
        slug = f"{prefix}_{slug}" if slug else prefix
    return slug[:60].rstrip("_")


class _MrrtParser(HTMLParser):
    """Collects the head's title and meta, the coded-content XML, sections, fields and labels."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.meta: dict[str, str] = {}
        self.xml_parts: list[str] = []
        self.sections: list[str] = []       # the open sections' names, outermost first
        self.section_depths: list[int] = []  # the element depth each open section started at
        self.fields: list[_Field] = []
        self.labels: dict[str, str] = {}
        self._depth = 0
        self._in = None                      # "title", "script", "label", "header", "option", "textarea"
        self._label_for: str | None = None
        self._label_field: _Field | None = None  # a field inside a <label> without `for`
        self._label_text: list[str] = []
        self._field: _Field | None = None
        self._option: dict | None = None
        self._header: list[str] = []
        self._pending_header = False
        self._recent_text = ""
    def handle_starttag(self, tag, attrs):
        attrs = {k.lower(): (v or "") for k, v in attrs}
        self._depth += 1
        if tag in ("input", "meta", "br", "img", "hr", "link"):  # void elements never close
            self._depth -= 1
        if tag == "title":
            self._in = "title"
        elif tag == "meta" and attrs.get("name"):
            self.meta[attrs["name"].lower()] = attrs.get("content", "")
        elif tag == "script" and attrs.get("type", "").lower() == "text/xml":
            self._in = "script"
        elif tag == "section":
            name = attrs.get("data-section-name") or attrs.get("id") or ""
            self.sections.append(name)
            self.section_depths.append(self._depth)
            self._pending_header = not attrs.get("data-section-name")
        elif tag == "header" and self._pending_header:
            self._in, self._header = "header", []
        elif tag == "label":
            self._in, self._label_for, self._label_text = "label", attrs.get("for"), []
            self._label_field = None
        elif tag in ("input", "select", "textarea"):
            if tag == "input" and attrs.get("type", "text").lower() in ("hidden", "submit", "button", "reset"):
                return
            self._field = _Field(tag, attrs, list(self.sections), before=self._recent_text)
            self.fields.append(self._field)
            if self._in == "label" and not self._label_for:
                self._label_field = self._field
            if tag == "textarea":
                self._in = "textarea"
        elif tag == "option" and self._field is not None and self._field.element == "select":
            self._in, self._option = "option", {"value": attrs.get("value"), "text": []}

    def handle_endtag(self, tag):
        if tag == "title" and self._in == "title":
            self._in = None
        elif tag == "script" and self._in == "script":
            self._in = None
        elif tag == "header" and self._in == "header":
            self._in = None
            if self._pending_header and self.sections:
                self.sections[-1] = " ".join("".join(self._header).split()) or self.sections[-1]
            self._pending_header = False
        elif tag == "label" and self._in == "label":
            self._in = None
            text = " ".join("".join(self._label_text).split()).rstrip(":").strip()
            if self._label_for and text:
                self.labels.setdefault(self._label_for, text)
            elif self._label_field is not None and text:
                self._label_field.attrs.setdefault("data-field-name", text)
        elif tag == "option" and self._in == "option" and self._option is not None:
            text = " ".join("".join(self._option["text"]).split())
            value = self._option["value"] if self._option["value"] is not None else text
            self._field.options.append((value.strip(), text or value.strip()))
            self._in, self._option = None, None
        elif tag == "textarea" and self._in == "textarea":
            self._in = None
        if tag == "section" and self.section_depths and self.section_depths[-1] == self._depth:
            self.sections.pop()
            self.section_depths.pop()
        if tag not in ("input", "meta", "br", "img", "hr", "link"):
            self._depth -= 1

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in == "script":
            self.xml_parts.append(data)
        elif self._in == "label":
            self._label_text.append(data)
        elif self._in == "header":
            self._header.append(data)
        elif self._in == "option" and self._option is not None:
            self._option["text"].append(data)
        elif self._in == "textarea" and self._field is not None:
            self._field.text += data
        else:
            if self._field is not None and len(self._field.after) < 40:
                self._field.after += data
            if data.strip():
                self._recent_text = " ".join(data.split())


def _codes(xml_text: str, origin: str) -> dict[str, dict]:
    """Field or section id -> {"scheme", "value", "meaning"} from coded_content entries."""
    text = xml_text.strip()
    if not text:
        return {}
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ReportError(f"{origin}: the template's coded content (script type=text/xml) is not valid XML: {exc}") from None
    codes = {}
    for entry in root.iter("entry"):
        target = entry.get("ORIGTXT") or entry.get("origtxt")
        code = entry.find(".//code")
        if not target or code is None:
            continue
        scheme, value, meaning = (code.get(k, "").strip() for k in ("scheme", "value", "meaning"))
        if scheme and value and meaning:
            codes[target] = {"scheme": scheme.upper().replace(" ", "_"), "value": value, "meaning": meaning}
    return codes


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _unit(f: _Field, notes: list[str], where: str) -> str:
    given = f.attrs.get("data-field-unit") or f.attrs.get("data-unit")
    words = (given or f.after).strip().split()
    if words:
        unit = UNITS.get(words[0].casefold().rstrip(".,;:)"))
        if unit:
            return unit
        if given:
            return given.strip()
    notes.append(f"{where}: no unit found; it takes a plain number (UCUM 1)")
    return "1"


def read_mrrt(path: Path | str) -> MrrtImport:
    """The RadSight template dict of an MRRT file; ReportError naming the file when it is not one."""
    path = Path(path)
    try:
        html = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the template: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not a UTF-8 text file; an MRRT template is UTF-8 HTML") from None
    if "<html" not in html[:4096].casefold():
        raise ReportError(f"{path}: not an MRRT template (an HTML5 file with <html>, sections and fields)")
    parser = _MrrtParser()
    parser.feed(html)
    parser.close()
    codes = _codes("".join(parser.xml_parts), str(path))
    title = (parser.meta.get("dcterms.title") or parser.title).strip()
    if not title:
        raise ReportError(f"{path}: the template has no title (head <title> or dcterms.title)")
    if not parser.fields:
        raise ReportError(f"{path}: the template has no fields (input, select or textarea)")
    identifier = parser.meta.get("dcterms.identifier", "").strip()
    template_id = "mrrt-" + _SLUG.sub("-", (identifier or title).casefold()).strip("-")[:60]
    notes: list[str] = []
    sections: dict[str, dict] = {}
    ids: set[str] = set()
    radios: dict[str, dict] = {}
    for f in parser.fields:
        section_title = " / ".join(s for s in f.section if s.strip()) or "Report"
        if section_title not in sections:
            section_id = base_id = _slug(section_title, "section")
            n = 2
            while section_id in {s["id"] for s in sections.values()}:
                section_id, n = f"{base_id}_{n}", n + 1
            sections[section_title] = {"id": section_id, "title": section_title, "fields": []}
        section = sections[section_title]
        html_type = f.attrs.get("type", "text").lower() if f.element == "input" else f.element
        kind = (f.attrs.get("data-field-type") or HTML_INPUT_TYPES.get(html_type)
                or ("SELECTION" if f.element == "select" else "TEXT")).upper()
        name = f.attrs.get("name") or f.attrs.get("id") or ""
        if html_type == "radio":  # one choice field per radio group
            group = radios.get(name)
            if group is not None:
                group["choices"].append(f.attrs.get("value") or f.attrs.get("data-field-name", ""))
                continue
        if html_type == "radio":  # the group's question is the text before its first button
            label = f.before.rstrip(":").strip() or name or "Choice"
            field_id = base = _slug(name or label, "field")
        else:
            label = (parser.labels.get(f.attrs.get("id", "")) or f.attrs.get("data-field-name")
                     or f.attrs.get("title") or name or "Field")
            field_id = base = _slug(f.attrs.get("id") or label, "field")
        n = 2
        while field_id in ids or field_id == "free_text":
            field_id, n = f"{base}_{n}", n + 1
        ids.add(field_id)
        where = f"field {label!r}"
        out: dict = {"id": field_id, "label": label, "type": MRRT_TYPES.get(kind, "text")}
        if kind not in MRRT_TYPES:
            notes.append(f"{where}: MRRT type {kind} is read as text")
        if out["type"] == "number":
            out["unit"] = _unit(f, notes, where)
            for key, attr in (("minimum", "min"), ("maximum", "max")):
                if _number(f.attrs.get(attr)) is not None:
                    out[key] = _number(f.attrs.get(attr))
        elif kind in ("BOOLEAN", "CHECKBOX"):
            out["choices"] = ["yes", "no"]
        elif out["type"] == "choice":
            if html_type == "radio":
                out["choices"] = [f.attrs.get("value") or f.attrs.get("data-field-name", "")]
                radios[name] = out
            else:
                choices = list(dict.fromkeys(text for value, text in f.options if text))
                if "multiple" in f.attrs or len(choices) < 2:
                    out = {"id": field_id, "label": label, "type": "text",
                           "help": "Options: " + "; ".join(choices) if choices else ""}
                    notes.append(f"{where}: {'a multiple selection' if 'multiple' in f.attrs else 'fewer than two options'}"
                                 " is kept as text, its options in the help")
                else:
                    out["choices"] = choices
        if out["type"] == "text" and kind == "TIME":
            out["help"] = "Time of day, HH:MM"
        if "required" in f.attrs or f.attrs.get("data-field-completion-action", "").upper() == "PROHIBIT":
            out["required"] = True
        default = f.text.strip() if f.element == "textarea" else f.attrs.get("value", "").strip()
        if default and out["type"] == "text":
            out["default"] = default
        code = codes.get(f.attrs.get("id", "")) or codes.get(name)
        if code:
            out["concept"] = code
        section["fields"].append(out)
    for group in radios.values():
        group["choices"] = list(dict.fromkeys(c for c in group["choices"] if c))
        if len(group["choices"]) < 2:
            group.pop("choices")
            group["type"] = "text"
            notes.append(f"field {group['label']!r}: a radio group with one option is kept as text")
    data = {"id": template_id, "title": title, "version": parser.meta.get("dcterms.date", "").strip() or "1.0",
            "description": (parser.meta.get("dcterms.description", "").strip()
                            + f" (imported from the MRRT template {path.name})").strip(),
            "sections": list(sections.values())}
    Template.from_dict(data, origin=str(path))  # what was built is a valid template
    return MrrtImport(data, notes)


def import_mrrt(path: Path | str, folder: Path | str, template_id: str | None = None) -> tuple[Template, list[str]]:
    """Write the MRRT template as `<id>.yaml` in `folder` (normally the user templates folder)
    and load it back from there; (template, notes)."""
    result = read_mrrt(path)
    if template_id:
        result.data["id"] = template_id
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{result.data['id']}.yaml"
    header = f"# Imported from the IHE MRRT template {Path(path).name} by radsight report templates import.\n"
    out.write_text(header + yaml.safe_dump(result.data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return Template.from_file(out), result.notes
