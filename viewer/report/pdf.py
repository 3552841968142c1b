"""The report as an A4 PDF: header, template sections with every AI value marked, the nodule
table, key images, growth charts, impression, the approved patient summary and the signature
block; then a PAdES signature (viewer.report.pdf_signature) when an identity is given.

Drawn with matplotlib's PDF backend (real, searchable TrueType text) on plain Figure objects.
matplotlib has no flowing text, so a small layout cursor here wraps paragraphs (measured with
matplotlib's own text metrics) and breaks pages.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image as mpimg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.textpath import TextToPath

from viewer.report.model import FieldValue, Finding, Provenance, Report, ReportError
from viewer.report.pdf_signature import sign_pdf_bytes
from viewer.report.summary import SummaryApproval, check_released, nodule_side
from viewer.report.templates import find_template

PAGE_W, PAGE_H = 8.27, 11.69            # A4 in inches
MARGIN, TOP, BOTTOM = 0.7, 0.6, 0.8
TEXT_W = PAGE_W - 2 * MARGIN
DECISION_SUPPORT = "AI results are decision support: values marked AI were proposed by a model and reviewed by the reader."
UNITS = {"mm3": "mm³", "d": "days", "[hnsf'U]": "HU", "%": "%"}
SOURCE_WORDS = {"dicom": "from the images' DICOM headers"}
AI_COLOUR, MUTED, RULE, SHADE = "#1f4e9c", "#555555", "#999999", "#eef1f6"
_METRICS = TextToPath()


ACRONYMS = {"ct", "ldct", "mr", "mri", "pet", "sr", "rads", "lung-rads"}


def template_title(template_id: str) -> str:
    """A readable title from a template id when the caller has none ("ct-chest-general" -> "CT Chest General")."""
    words = template_id.replace("_", "-").split("-")
    return " ".join(w.upper() if w.lower() in ACRONYMS else w.capitalize() for w in words if w)


@dataclass
class _Layout:
    """A cursor down A4 pages: y is inches from the top of the current page."""

    draft: bool
    pages: list[Figure] = field(default_factory=list)
    y: float = 0.0

    def __post_init__(self) -> None:
        self.new_page()

    def new_page(self) -> None:
        fig = Figure(figsize=(PAGE_W, PAGE_H))
        if self.draft:
            fig.text(0.5, 0.5, "DRAFT - NOT SIGNED", fontsize=60, color="#dddddd", rotation=45,
                     ha="center", va="center", zorder=-1)
        self.pages.append(fig)
        self.y = TOP

    @property
    def fig(self) -> Figure:
        return self.pages[-1]

    def room(self, height: float) -> None:
        if self.y + height > PAGE_H - BOTTOM and self.y > TOP:
            self.new_page()

    def _put(self, x: float, y: float, s: str, **kw: Any) -> None:
        self.fig.text(x, PAGE_H - y, s, transform=self.fig.dpi_scale_trans, va="top", **kw)

    def rule(self, colour: str = RULE) -> None:
        self.fig.add_artist(Line2D([MARGIN, PAGE_W - MARGIN], [PAGE_H - self.y] * 2, lw=0.6, color=colour,
                                   transform=self.fig.dpi_scale_trans))

    def shade(self, x: float, y: float, w: float, h: float, colour: str = SHADE) -> None:
        self.fig.add_artist(Rectangle((x, PAGE_H - y - h), w, h, facecolor=colour, edgecolor="none",
                                      transform=self.fig.dpi_scale_trans, zorder=-0.5))

    def lines(self, text: str, size: float, width: float, weight: str = "normal", style: str = "normal") -> list[str]:
        return wrap(text, size, width, weight, style)

    def paragraph(self, text: str, size: float = 9.5, indent: float = 0.0, colour: str = "black",
                  weight: str = "normal", style: str = "normal", after: float = 0.06) -> None:
        step = size * 1.35 / 72
        for line in self.lines(text, size, TEXT_W - indent, weight, style):
            self.room(step)
            self._put(MARGIN + indent, self.y, line, fontsize=size, color=colour, weight=weight, style=style)
            self.y += step
        self.y += after

    def heading(self, text: str, keep: float = 0.4) -> None:
        """A section title, on a new page unless `keep` inches of what follows fit under it."""
        self.room(0.45 + keep)
        self.y += 0.12
        self._put(MARGIN, self.y, text, fontsize=12.5, weight="bold")
        self.y += 0.25
        self.rule()
        self.y += 0.08

    def field(self, label: str, value: str, note: str | None, label_w: float = 2.1) -> None:
        """A label on the left, the wrapped value on the right and its provenance under it."""
        size, step = 9.5, 9.5 * 1.35 / 72
        value_lines = self.lines(value, size, TEXT_W - label_w)
        note_lines = self.lines(note, 8, TEXT_W - label_w, style="italic") if note else []
        label_lines = self.lines(label, size, label_w - 0.1, weight="bold")
        self.room(step * max(len(label_lines), len(value_lines) + len(note_lines)) + 0.05)
        top = self.y
        for i, line in enumerate(label_lines):
            self._put(MARGIN, top + i * step, line, fontsize=size, weight="bold")
        y = top
        for line in value_lines:
            self._put(MARGIN + label_w, y, line, fontsize=size)
            y += step
        for line in note_lines:
            self._put(MARGIN + label_w, y, line, fontsize=8, style="italic", color=AI_COLOUR)
            y += 8 * 1.35 / 72
        self.y = max(y, top + len(label_lines) * step) + 0.05

    def table(self, columns: Sequence[tuple[str, float]], rows: Sequence[Sequence[str]], size: float = 8.0) -> None:
        step = size * 1.35 / 72

        def header() -> None:
            height = step * max(len(self.lines(t, size, w - 0.06, "bold")) for t, w in columns) + 0.06
            self.shade(MARGIN, self.y, TEXT_W, height, "#d9dfe9")
            x = MARGIN
            for title, width in columns:
                for i, line in enumerate(self.lines(title, size, width - 0.06, "bold")):
                    self._put(x + 0.03, self.y + 0.03 + i * step, line, fontsize=size, weight="bold")
                x += width
            self.y += height

        self.room(step * 4)
        header()
        for n, row in enumerate(rows):
            cells = [self.lines(str(v), size, w - 0.06) for v, (_, w) in zip(row, columns)]
            height = step * max(len(c) for c in cells) + 0.05
            if self.y + height > PAGE_H - BOTTOM:
                self.new_page()
                header()
            if n % 2:
                self.shade(MARGIN, self.y, TEXT_W, height)
            x = MARGIN
            for cell, (_, width) in zip(cells, columns):
                for i, line in enumerate(cell):
                    self._put(x + 0.03, self.y + 0.025 + i * step, line, fontsize=size)
                x += width
            self.y += height
        self.rule()
        self.y += 0.1

    def images(self, items: Sequence[tuple[Path, str]], per_row: int, max_h: float) -> None:
        """PNG pictures side by side, each with its caption under it."""
        gap = 0.2
        width = (TEXT_W - gap * (per_row - 1)) / per_row
        for start in range(0, len(items), per_row):
            row = items[start:start + per_row]
            pictures = [mpimg.imread(str(p)) for p, _ in row]
            sizes = []
            for pic in pictures:
                h, w = pic.shape[:2]
                scale = min(width / w, max_h / h)
                sizes.append((w * scale, h * scale))
            captions = [self.lines(c, 8, width) for _, c in row]
            row_h = max(h for _, h in sizes) + 8 * 1.35 / 72 * max(len(c) for c in captions) + 0.15
            self.room(row_h)
            for i, (pic, (w, h), caption) in enumerate(zip(pictures, sizes, captions)):
                x = MARGIN + i * (width + gap) + (width - w) / 2
                ax = self.fig.add_axes((x / PAGE_W, (PAGE_H - self.y - h) / PAGE_H, w / PAGE_W, h / PAGE_H))
                ax.imshow(pic, interpolation="lanczos")
                ax.set_axis_off()
                y = self.y + h + 0.05
                for line in caption:
                    self._put(MARGIN + i * (width + gap), y, line, fontsize=8, color=MUTED)
                    y += 8 * 1.35 / 72
            self.y += row_h

    def footers(self, left: str) -> None:
        for n, fig in enumerate(self.pages, start=1):
            fig.add_artist(Line2D([MARGIN, PAGE_W - MARGIN], [BOTTOM - 0.25] * 2, lw=0.5, color=RULE,
                                  transform=fig.dpi_scale_trans))
            fig.text(MARGIN, BOTTOM - 0.32, left, fontsize=7, color=MUTED, va="top", transform=fig.dpi_scale_trans)
            fig.text(PAGE_W - MARGIN, BOTTOM - 0.32, f"page {n} of {len(self.pages)}", fontsize=7, color=MUTED,
                     va="top", ha="right", transform=fig.dpi_scale_trans)
            fig.text(MARGIN, BOTTOM - 0.47, DECISION_SUPPORT, fontsize=7, color=MUTED, va="top",
                     transform=fig.dpi_scale_trans)


def wrap(text: str, size: float, width_in: float, weight: str = "normal", style: str = "normal") -> list[str]:
    """Greedy word wrap to `width_in` inches, measured with the font the PDF uses."""
    prop = FontProperties(size=size, weight=weight, style=style)
    limit = width_in * 72

    def width(s: str) -> float:
        return _METRICS.get_text_width_height_descent(s, prop, ismath=False)[0]

    out: list[str] = []
    for para in str(text).splitlines() or [""]:
        line = ""
        for word in para.split():
            while width(word) > limit and len(word) > 1:      # a UID or path longer than the column
                cut = len(word)
                while cut > 1 and width(word[:cut]) > limit:
                    cut -= 1
                if line:
                    out.append(line)
                    line = ""
                out.append(word[:cut])
                word = word[cut:]
            candidate = f"{line} {word}" if line else word
            if line and width(candidate) > limit:
                out.append(line)
                line = word
            else:
                line = candidate
        out.append(line)
    return out


def _number(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return f"{float(value):.{digits}f}".rstrip("0").rstrip(".") if digits else f"{float(value):.0f}"
    return str(value)


def format_value(value: FieldValue) -> str:
    """A field's value as printed, with its unit."""
    v = value.value
    if isinstance(v, (list, tuple)):
        text = "; ".join(_number(item) if not isinstance(item, dict) else
                         ", ".join(f"{k}: {_number(x)}" for k, x in item.items()) for item in v) or "-"
    elif isinstance(v, dict):
        text = ", ".join(f"{k}: {_number(x)}" for k, x in v.items()) or "-"
    else:
        text = _number(v, 2) if isinstance(v, float) else _number(v)
    unit = UNITS.get(value.unit, value.unit) if value.unit else None
    if unit and unit.startswith("{") and unit.endswith("}"):     # a UCUM annotation: "{nodules}"
        unit = unit[1:-1]
    return f"{text} {unit}" if unit and text != "-" else text


def provenance_note(provenance: Provenance, confirmed: bool) -> str | None:
    """Where a value came from, in one line: AI with model, version and confidence, measured, or
    read from the images, then the reader's decision; None for the reader's own typing."""
    source = provenance.source
    if source == "reader":
        if confirmed and provenance.decision in (None, "accepted"):
            return None
        parts = ["typed by the reader"]
    elif source == "ai":
        parts = [f"AI: {provenance.model_id} {provenance.model_version}"]
    elif source == "measured":
        model = f" ({provenance.model_id} {provenance.model_version})" if provenance.model_id else ""
        parts = [f"measured{model}"]
    else:
        parts = [SOURCE_WORDS.get(source, source)]
    if provenance.confidence is not None:
        parts.append(f"confidence {provenance.confidence:.2f}")
    if source in ("ai", "measured") or provenance.decision == "edited":
        parts.append(f"reader {provenance.decision}" if provenance.decision else "reader decision pending")
    if not confirmed:
        parts.append("NOT CONFIRMED")
    return ", ".join(parts)


def _label(name: str) -> str:
    return name.rsplit(".", 1)[-1].replace("_", " ").capitalize()


def _default_sections(report: Report) -> list[tuple[str, list[tuple[str, str]]]]:
    """Fields grouped by the part of their id before the first dot ("findings.lung_rads")."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in report.values:
        section = _label(name.split(".", 1)[0]) if "." in name else "Report"
        groups.setdefault(section, []).append((name, _label(name)))
    return list(groups.items())


FINDINGS = "\0findings"                  # a section item that stands for the nodule table
HEADER_FIELDS = ("study_date", "exam_date")


def _layout(report: Report) -> tuple[list[tuple[str, list[tuple[str, str]]]], str]:
    """Sections as (title, [(field id, label)]) and the title, from the report's template when it
    is installed; else fields grouped by id prefix under a title made from the template id."""
    try:
        template = find_template(report.template_id)
    except ReportError:
        return _default_sections(report), template_title(report.template_id)
    sections = [(s.title, [(FINDINGS if f.type == "findings" else f.id, f.label) for f in s.fields])
                for s in template.sections]
    listed = {name for _, items in sections for name, _ in items}
    extra = [(name, _label(name)) for name in report.values if name not in listed]
    if extra:
        sections.append(("Other fields", extra))
    return sections, template.title


def _nodules(page: _Layout, report: Report) -> None:
    """The nodule table, each nodule's deciding Lung-RADS rule and the models behind them."""
    findings = [f for f in report.findings if f.include]
    rejected = len(report.findings) - len(findings)
    if findings:
        page.table(NODULE_COLUMNS, nodule_rows(findings))
    else:
        page.paragraph("No nodules reported.", size=9.5)
    for f in findings:
        lr = f.record.get("lung_rads") or {}
        if lr.get("rule"):
            page.paragraph(f"{f.record.get('id')}: Lung-RADS {lr.get('category')} ({lr['rule']}). "
                           f"{lr.get('management', '')}", size=8, colour=MUTED, after=0.02)
    models = sorted({f"{m['id']} {m['version']}" for f in findings
                     for m in (f.record.get("provenance") or {}).get("models") or () if m.get("id")})
    if models:
        page.paragraph(f"AI models behind these findings: {', '.join(models)}.", size=8, colour=AI_COLOUR)
    if rejected:
        page.paragraph(f"{rejected} AI finding(s) rejected by the reader are not reported (kept in the audit trail).",
                       size=8, colour=MUTED)


def _source(finding: Finding) -> str:
    p = finding.provenance
    if p.source == "ai":
        text = f"AI {p.model_id} {p.model_version}"
    elif p.source == "measured":
        text = "measured"
    else:
        text = "reader"
    if p.confidence is not None:
        text += f", conf. {p.confidence:.2f}"
    text += f", {p.decision}" if p.decision else ", pending"
    return text


def _change(record: dict) -> str:
    if record.get("present") is False:
        return "resolved"
    if record.get("status") == "new":
        return "new"
    prior = record.get("prior") or {}
    change = prior.get("volume_change_pct")
    return "-" if change is None else f"{change:+.1f}"


def _vdt(days: float | None) -> str:
    if days is not None and abs(days) > VDT_SHOWN_MAX_DAYS:
        return f"> {VDT_SHOWN_MAX_DAYS}" if days > 0 else f"< -{VDT_SHOWN_MAX_DAYS}"
    return _number(days, 0)


def nodule_rows(findings: Iterable[Finding]) -> list[list[str]]:
    """The nodule table's rows: id, type, side, mean diameter, volume, change, VDT, Lung-RADS, source."""
    rows = []
    for f in findings:
        r = f.record
        prior = r.get("prior") or {}
        volume = r.get("volume_mm3", r.get("last_volume_mm3"))
        rows.append([str(r.get("id", "-")), str(r.get("type") or "-"), (nodule_side(r) or "-").replace(" lung", ""),
                     _number(r.get("mean_diameter_mm")), _number(volume, 0), _change(r),
                     _vdt(prior.get("vdt_days")), str((r.get("lung_rads") or {}).get("category") or "-"),
                     _source(f)])
    return rows


NODULE_COLUMNS = (("ID", 0.38), ("Type", 0.82), ("Side", 0.45), ("Mean diameter (mm)", 0.68),
                  ("Volume (mm³)", 0.62), ("Volume change (%)", 0.66), ("VDT (days)", 0.58),
                  ("Lung-RADS", 0.8), ("Source", TEXT_W - 4.99))
# A doubling time beyond ten years says "not growing"; its exact figure is noise.
VDT_SHOWN_MAX_DAYS = 3650


def _check_inputs(report: Report, identity: Any, summary: SummaryApproval | None,
                  pictures: Iterable[str | Path]) -> None:
    if identity is not None:
        if report.status != "signed" or not report.signer:
            raise ReportError(f"report {report.id} version {report.version} is a draft: sign the report "
                              "before its PDF is signed")
        name = getattr(identity, "common_name", None)
        if name and name != report.signer:
            raise ReportError(f"report {report.id} version {report.version} was signed by {report.signer!r} "
                              f"but the PDF would be signed by {name!r}: use the same identity")
    if summary is not None:
        check_released(summary, report)
    for path in pictures:
        if not Path(path).is_file():
            raise ReportError(f"picture {path} for report {report.id} does not exist")


def _box(page: "_Layout", texts: list[str], colour: str) -> None:
    """Bold paragraphs on a shaded band the width of the text, under the report's header."""
    step = 9 * 1.35 / 72
    box_lines = [line for text in texts for line in page.lines(text, 9, TEXT_W - 0.2, weight="bold")]
    box_h = len(box_lines) * step + 0.14
    page.room(box_h)
    page.shade(MARGIN, page.y, TEXT_W, box_h, colour)
    for i, line in enumerate(box_lines):
        page._put(MARGIN + 0.1, page.y + 0.07 + i * step, line, fontsize=9, weight="bold")
    page.y += box_h + 0.1


def render_pdf(report: Report, charts: Sequence[str | Path] = (), summary: SummaryApproval | None = None,
               *, title: str | None = None,
               sections: Sequence[tuple[str, Sequence[tuple[str, str]]]] | None = None) -> bytes:
    """The unsigned PDF bytes of a report (see write_pdf)."""
    _check_inputs(report, None, summary, [*(k.png_path for k in report.key_images), *charts])
    layout, template_name = _layout(report)
    layout = sections if sections is not None else layout
    title = title or template_name
    page = _Layout(draft=report.status != "signed")
    page.paragraph(title, size=17, weight="bold", after=0.1)
    state = (f"Signed report, version {report.version}" if report.status == "signed"
             else f"DRAFT, version {report.version}: not signed, not for clinical use")
    page.paragraph(state, size=10, weight="bold", colour="black" if report.status == "signed" else "#b00020")
    if report.predecessor_id:
        page.paragraph(f"Amendment of report {report.predecessor_id}. Reason: {report.amendment_reason}", size=9.5)
    for name in ("study_date", "exam_date"):
        if report.values.get(name) is not None and report.values[name].value is not None:
            page.paragraph(f"Study date: {format_value(report.values[name])}", size=9.5)
            break
    page.paragraph(f"Study UID: {report.study_uid}", size=8, colour=MUTED, after=0.0)
    if report.series_uid:
        page.paragraph(f"Series UID: {report.series_uid}", size=8, colour=MUTED, after=0.0)
    page.paragraph(f"Report: {report.id}, template {report.template_id}", size=8, colour=MUTED)
    _box(page, [DECISION_SUPPORT], "#fff4d6")
    if report.ai_cautions:  # e.g. the models ran outside their validated domain: said before any AI value
        _box(page, list(report.ai_cautions), "#fde2e4")

    nodules_drawn = False
    for section, items in layout:
        items = [(name, label) for name, label in items
                 if name == FINDINGS or (name in report.values and report.values[name].value is not None
                                         and name not in HEADER_FIELDS)]
        if not items:
            continue
        page.heading(section)
        for name, label in items:
            if name == FINDINGS:
                _nodules(page, report)
                nodules_drawn = True
            else:
                value = report.values[name]
                page.field(label, format_value(value), provenance_note(value.provenance, value.confirmed))
    if report.findings and not nodules_drawn:
        page.heading("Nodules", keep=1.0)
        _nodules(page, report)
    if report.key_images:
        page.heading("Key images", keep=3.5)
        page.images([(Path(k.png_path), k.caption) for k in report.key_images], per_row=2, max_h=3.2)
    if charts:
        page.heading("Growth", keep=3.0)
        page.images([(Path(c), "") for c in charts], per_row=1, max_h=3.8)
    if report.free_text.strip():
        page.heading("Comments")
        page.paragraph(report.free_text, size=10)
    page.heading("Signature")
    if report.status == "signed":
        page.paragraph(f"Electronically signed by {report.signer} at {report.signed_at} (UTC).", size=10,
                       weight="bold")
        page.paragraph("This file carries a PAdES digital signature: any change to it after signing shows when "
                       "it is verified (radsight report verify FILE).", size=8.5, colour=MUTED)
    else:
        page.paragraph("Not signed.", size=10, weight="bold", colour="#b00020")
    if summary is not None:                 # a page of its own, to hand to the patient
        page.new_page()
        page.heading("Summary for the patient")
        page.paragraph(summary.text, size=11)
        page.paragraph(f"Approved for the patient by {summary.approver} at {summary.approved_at}.", size=8,
                       colour=MUTED)
    page.footers(f"RadSight  |  {title}  |  report {report.id}, version {report.version}")

    out = io.BytesIO()
    metadata = {"Title": f"{title} (report {report.id}, version {report.version})", "Creator": "RadSight",
                "Subject": "Radiology report", "Author": report.signer or "unsigned draft"}
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(out, metadata=metadata) as pdf:
        for fig in page.pages:
            pdf.savefig(fig)
    return out.getvalue()


def write_pdf(report: Report, out_path: str | Path, identity: Any = None, charts: Sequence[str | Path] = (),
              summary: SummaryApproval | None = None, *, title: str | None = None,
              sections: Sequence[tuple[str, Sequence[tuple[str, str]]]] | None = None) -> Path:
    """Write the report as an A4 PDF, PAdES-signed by `identity` (which must be the report's signer).

    title: the template's title (default: from the template id); sections: (section title,
    [(field id, label)]) in the template's order (default: fields grouped by id prefix). The file
    appears complete or not at all (written beside, then renamed)."""
    out_path = Path(out_path)
    _check_inputs(report, identity, summary, ())
    data = render_pdf(report, charts, summary, title=title, sections=sections)
    if identity is not None:
        data = sign_pdf_bytes(data, identity, reason=f"Radiology report {report.id} version {report.version} signed")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    part = out_path.with_name(f".{out_path.name}.{os.getpid()}.{dt.datetime.now().timestamp():.0f}.part")
    part.write_bytes(data)
    part.replace(out_path)
    return out_path
