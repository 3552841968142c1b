"""validation.html: the figures, the FROC plot (embedded PNG), a row per reference lesion and per
false positive with its thumbnail, and every warning, so a person can check each finding."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from viewer.validation.froc import Froc
from viewer.validation.thumbnails import froc_png

STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:12px;vertical-align:top;text-align:left}
th{background:#f0f0f0}.miss{color:#b00}.hit{color:#070}.note{color:#666;font-size:12px}
.fig td:first-child{font-weight:bold}"""


def write_html(report: dict, path: Path | str) -> Path:
    path = Path(path)
    figures = report["figures"]
    e = html.escape
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>RadSight validation</title>"
             f"<style>{STYLE}</style></head><body>",
             "<h1>RadSight validation</h1>",
             f"<p>{e(report['description'])}, {e(report['date'])}. Method: {e(report['method']['kind'])} ("
             + ", ".join(e(f"{m['id']} {m['version']}") for m in report["method"]["models"]) + ")</p>",
             "<p class='note'>Green: reference (mask outline, boxes, or dashed: the LUNA16 radius around a centre). "
             "Red: the detection's outline and centre. Axial crops in a lung window.</p>",
             "<h2>Figures</h2><table class='fig'>"]
    for key, label in (("cases", "cases"), ("cases_failed", "cases that failed"), ("lesions", "reference lesions"),
                       ("excluded_findings", "excluded findings"), ("detections", "detections"), ("hits", "lesions found"),
                       ("sensitivity", "sensitivity"), ("false_positives", "false positives"),
                       ("false_positives_per_scan", "false positives per scan"), ("cpm", "CPM (LUNA16)")):
        if key in figures:
            parts.append(f"<tr><td>{label}</td><td>{_value(figures[key])}</td></tr>")
    for key, label in (("volume_error_pct", "volume error (%)"), ("diameter_error_mm", "diameter error (mm)"),
                       ("dice", "Dice"), ("seconds_per_study", "seconds per study")):
        if figures.get(key):
            s = figures[key]
            parts.append(f"<tr><td>{label}</td><td>median {s['median']}, mean {s['mean']}, mean absolute "
                         f"{s['mean_abs']}, range {s['min']}..{s['max']} (n = {s['n']})</td></tr>")
    if "pointing_game" in figures:
        p = figures["pointing_game"]
        parts.append(f"<tr><td>pointing game</td><td>{p['peak_inside']} of {p['lesions']} peaks inside the lesion "
                     f"({_value(p['rate'])})</td></tr>")
    if figures.get("froc"):
        at = figures["froc"]["sensitivity_at"]
        parts.append("<tr><td>sensitivity at FP/scan</td><td>" + ", ".join(f"{k}: {v}" for k, v in at.items())
                     + "</td></tr>")
    parts.append("</table>")
    if figures.get("froc"):
        f = figures["froc"]
        curve = Froc(tuple(f["false_positives_per_scan"]), tuple(f["sensitivity"]),
                     tuple(float("inf") if t is None else t for t in f["thresholds"]), f["lesions"], f["scans"])
        png = base64.b64encode(froc_png(curve, f"{figures['lesions']} lesions in {figures['cases']} scans")).decode()
        parts.append(f"<h2>FROC</h2><img alt='FROC' src='data:image/png;base64,{png}'>")
    parts.append("<h2>Reference lesions</h2><table><tr><th>picture</th><th>case</th><th>lesion</th><th>reference</th>"
                 "<th>result</th><th>detection</th><th>errors</th></tr>")
    for row in report["lesions"]:
        result = ("<span class='hit'>found</span>" if row["found"] else "<span class='miss'>missed</span>"
                  if row["found"] is False else f"excluded: {e(row.get('excluded_because', ''))}")
        d = row.get("detection")
        detection = (f"{e(d['id'])} score {d['score']}, {d['diameter_mm']} mm, {d['volume_mm3']} mm3, "
                     f"{e(d.get('kind') or '')} {e(d.get('type') or '')}" if d else "")
        if row.get("explanation"):
            x = row["explanation"]
            detection += e(f" peak {'inside' if x.get('peak_inside') else 'outside'}, {x.get('peak_distance_mm')} mm "
                           f"from the centre, mass inside {x.get('mass_inside')}" if "peak_inside" in x else x["error"])
        errors = "; ".join(f"{k.replace('_', ' ')} {row[k]}" for k in ("volume_error_pct", "diameter_error_mm", "dice")
                           if k in row)
        readers = f", {row['readers']} of {row['readers_total']} readers" if "readers" in row else ""
        parts.append(f"<tr><td>{_img(row)}</td><td>{e(row['case'])}</td><td>{e(row['id'])} {e(row['label'])}<br>"
                     f"centre {row['centre_lps_mm']}</td><td>{e(row['format'])} ({e(row['matched_by'])}){readers}<br>"
                     f"{row['diameter_mm']} mm ({e(row['diameter_basis'])}), {row['volume_mm3']} mm3<br>"
                     f"<span class='note'>{e(Path(row['source']).name)}</span></td><td>{result}</td>"
                     f"<td>{detection}</td><td>{e(errors)}</td></tr>")
    parts.append("</table>")
    for key, title in (("false_positives", "False positives"), ("ignored_detections", "Detections not counted")):
        rows = report.get(key) or []
        parts.append(f"<h2>{title} ({len(rows)})</h2>")
        if rows:
            parts.append("<table><tr><th>picture</th><th>case</th><th>detection</th><th>centre (LPS mm)</th>"
                         "<th>size</th><th>type</th><th>score</th></tr>")
            for row in rows:
                parts.append(f"<tr><td>{_img(row)}</td><td>{e(row['case'])}</td><td>{e(row['id'])} {e(row['outcome'])}"
                             f"</td><td>{row['centre_lps_mm']}</td><td>{row['diameter_mm']} mm, {row['volume_mm3']} mm3"
                             f"</td><td>{e(row.get('kind') or '')} {e(row.get('type') or '')}<br><span class='note'>"
                             f"{e(row.get('method') or '')}</span></td><td>{row['score']}</td></tr>")
            parts.append("</table>")
    parts.append("<h2>Cases</h2><table><tr><th>case</th><th>voxels</th><th>references</th><th>lesions</th>"
                 "<th>findings</th><th>pattern</th><th>seconds</th><th>problem</th></tr>")
    for c in report["cases"]:
        refs = "<br>".join(e(f"{Path(r['file']).name}: {r['format']} by {r['matched_by']} ({r['lesions']})")
                           for r in c.get("references", []))
        parts.append(f"<tr><td>{e(c['case'])}</td><td>{c.get('shape_zyx')}</td><td>{refs}</td><td>{c.get('lesions')}"
                     f"</td><td>{c.get('detections')}</td><td>{e((c.get('pattern') or {}).get('description') or '')}"
                     f"</td><td>{c.get('seconds')}</td><td>{e(c['error'] or '')}</td></tr>")
    parts.append("</table>")
    notes = report["warnings"] + [n for c in report["cases"] for n in c.get("notes", [])] + report["skipped_series"]
    if notes:
        parts.append("<h2>Warnings and notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _img(row: dict) -> str:
    return f"<img src='{html.escape(row['thumbnail'])}' width='176'>" if row.get("thumbnail") else ""


def _value(value) -> str:
    return "n/a" if value is None else str(value)
