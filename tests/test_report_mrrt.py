"""IHE MRRT (RadReport-format) template import: a synthetic MRRT file written here with every
field kind the format has (text, number with a unit written after it or in data-field-unit,
selection, multiple selection, date, time, checkbox, radio group, textarea with boilerplate),
nested sections and coded content; imported into the user templates folder, found by id, drafted,
filled and checked like a bundled template. Bad files get one error naming the file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from viewer.report.drafts import Drafts, check_ready_to_sign
from viewer.report.model import ReportError
from viewer.report.mrrt import import_mrrt, read_mrrt
from viewer.report.templates import find_template, template_dirs
from viewer.store import Store

ROOT = Path(__file__).resolve().parents[1]

MRRT = """<!DOCTYPE html>
<html>
<head>
  <meta charset="UTF-8">
  <title>CT Chest Nodule Follow-up (test)</title>
  <meta name="dcterms.title" content="CT Chest Nodule Follow-up (test)">
  <meta name="dcterms.identifier" content="TEST-0001">
  <meta name="dcterms.description" content="A synthetic template in the MRRT layout">
  <meta name="dcterms.date" content="2026-11-30">
  <script type="text/xml">
    <template_attributes>
      <coding_schemes>
        <coding_scheme name="RADLEX" designator="2.16.840.1.113883.6.256"/>
      </coding_schemes>
      <coded_content>
        <entry ORIGTXT="size">
          <term><code meaning="diameter" value="RID13432" scheme="RADLEX"/></term>
        </entry>
        <entry ORIGTXT="impression">
          <term><code meaning="Impression" value="19005-8" scheme="LN"/></term>
        </entry>
      </coded_content>
    </template_attributes>
  </script>
</head>
<body>
  <section id="clinical" class="level1" data-section-name="Clinical information">
    <header class="level1">Clinical information</header>
    <p><label for="indication">Indication</label>
       <textarea id="indication" name="indication" data-field-type="TEXT">Follow-up of a lung nodule.</textarea></p>
    <p><label for="prior_date">Prior study date</label>
       <input type="date" id="prior_date" name="prior_date" data-field-type="DATE"></p>
    <p><label for="scan_time">Scan time</label>
       <input type="time" id="scan_time" name="scan_time" data-field-type="TIME"></p>
  </section>
  <section id="findings" class="level1" data-section-name="Findings">
    <header class="level1">Findings</header>
    <section id="nodule" class="level2">
      <header class="level2">Dominant nodule</header>
      <p><label for="size">Size</label>
         <input type="number" id="size" name="size" data-field-type="NUMBER" min="0" max="100" step="0.1"> mm</p>
      <p><label for="volume">Volume</label>
         <input type="number" id="volume" name="volume" data-field-type="NUMBER" data-field-unit="mm3"></p>
      <p><label for="density">Density</label>
         <select id="density" name="density" data-field-type="SELECTION" required>
           <option value="solid">Solid</option>
           <option value="part">Part-solid</option>
           <option value="ggn">Ground glass</option>
         </select></p>
      <p><label for="features">Features</label>
         <select id="features" name="features" data-field-type="SELECTION" multiple>
           <option>Spiculated</option><option>Lobulated</option><option>Calcified</option>
         </select></p>
      <p><label for="growth">Growth since prior</label>
         <input type="checkbox" id="growth" name="growth" data-field-type="BOOLEAN"></p>
      <p>Laterality:
         <label><input type="radio" name="side" value="Right" data-field-type="SELECTION"> Right</label>
         <label><input type="radio" name="side" value="Left" data-field-type="SELECTION"> Left</label></p>
    </section>
  </section>
  <section id="impression_section" class="level1" data-section-name="Impression">
    <header class="level1">Impression</header>
    <p><label for="impression">Impression</label>
       <textarea id="impression" name="impression" data-field-type="TEXT"
                 data-field-completion-action="PROHIBIT"></textarea></p>
  </section>
</body>
</html>
"""


@pytest.fixture
def mrrt_file(tmp_path):
    path = tmp_path / "nodule-followup.html"
    path.write_text(MRRT, encoding="utf-8")
    return path


def test_every_mrrt_field_kind_becomes_a_typed_field(mrrt_file):
    result = read_mrrt(mrrt_file)
    data = result.data
    assert data["id"] == "mrrt-test-0001" and data["title"] == "CT Chest Nodule Follow-up (test)"
    assert data["version"] == "2026-11-30"
    sections = {s["title"]: {f["id"]: f for f in s["fields"]} for s in data["sections"]}
    assert list(sections) == ["Clinical information", "Findings / Dominant nodule", "Impression"]
    clinical, nodule, impression = sections.values()
    assert clinical["indication"] == {"id": "indication", "label": "Indication", "type": "text",
                                      "default": "Follow-up of a lung nodule."}
    assert clinical["prior_date"]["type"] == "date"
    assert clinical["scan_time"]["type"] == "text" and "HH:MM" in clinical["scan_time"]["help"]
    assert nodule["size"] == {"id": "size", "label": "Size", "type": "number", "unit": "mm", "minimum": 0.0,
                              "maximum": 100.0,
                              "concept": {"scheme": "RADLEX", "value": "RID13432", "meaning": "diameter"}}
    assert nodule["volume"]["unit"] == "mm3"
    assert nodule["density"] == {"id": "density", "label": "Density", "type": "choice",
                                 "choices": ["Solid", "Part-solid", "Ground glass"], "required": True}
    assert nodule["features"]["type"] == "text" and "Spiculated; Lobulated; Calcified" in nodule["features"]["help"]
    assert nodule["growth"]["choices"] == ["yes", "no"]
    assert nodule["side"]["label"] == "Laterality" and nodule["side"]["choices"] == ["Right", "Left"]
    assert impression["impression"]["required"] is True
    assert impression["impression"]["concept"]["scheme"] == "LN"
    assert any("multiple selection" in note for note in result.notes)


def test_an_imported_template_drafts_fills_and_checks_like_a_bundled_one(mrrt_file, tmp_path, monkeypatch):
    monkeypatch.setenv("RADSIGHT_DATA_DIR", str(tmp_path / "data"))
    user_templates = template_dirs()[1]
    template, _ = import_mrrt(mrrt_file, user_templates)
    assert (user_templates / "mrrt-test-0001.yaml").is_file()
    assert find_template("mrrt-test-0001").fields == template.fields
    with Store(tmp_path / "db.sqlite3") as store:
        drafts = Drafts(store, user="reader1")
        report = drafts.create(template, study={"study_uid": "1.2.3", "series_uid": "1.2.3.4"})
        assert report.values["indication"].value == "Follow-up of a lung nodule."
        report = drafts.set(report.id, "size", "8.5")
        assert report.values["size"].value == 8.5 and report.values["size"].unit == "mm"
        with pytest.raises(ReportError, match="from 0 to 100 mm"):
            drafts.set(report.id, "size", 150)
        report = drafts.set(report.id, "density", "part-solid")
        assert report.values["density"].value == "Part-solid"  # kept in the template's spelling
        with pytest.raises(ReportError, match="density.*impression|impression.*density"):
            check_ready_to_sign(drafts.set(report.id, "density", None), template)
        drafts.set(report.id, "density", "Solid")
        drafts.set(report.id, "impression", "Stable solid nodule.")
        check_ready_to_sign(store.report(report.id), template)


@pytest.mark.parametrize(("content", "words"), [
    (b"\xff\xfe\x00garbage", "not a UTF-8 text file"),
    ("just some text", "not an MRRT template"),
    ("<!DOCTYPE html><html><head></head><body><input id='a'></body></html>", "has no title"),
    ("<html><head><title>T</title></head><body><p>no fields</p></body></html>", "has no fields"),
    ("<html><head><title>T</title><script type='text/xml'><a><b></a></script></head>"
     "<body><input id='a'></body></html>", "coded content .* is not valid XML"),
])
def test_a_bad_file_is_one_error_naming_it(tmp_path, content, words):
    path = tmp_path / "bad.html"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ReportError, match=f"{path}: .*{words}"):
        read_mrrt(path)


def test_cli_imports_and_lists_templates(mrrt_file, tmp_path):
    env = {**os.environ, "RADSIGHT_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.run([sys.executable, "-m", "viewer.cli", "report", "templates", "import", str(mrrt_file),
                          "--json"], capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["id"] == "mrrt-test-0001" and Path(out["path"]).is_file() and out["fields"] == 10
    listed = subprocess.run([sys.executable, "-m", "viewer.cli", "report", "templates", "list", "--json"],
                            capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert listed.returncode == 0, listed.stderr
    ids = {t["id"] for t in json.loads(listed.stdout)}
    assert {"mrrt-test-0001", "lung-screening-ldct-lungrads-2022", "ct-chest-general"} <= ids
    bad = subprocess.run([sys.executable, "-m", "viewer.cli", "report", "templates", "import",
                          str(tmp_path / "missing.html")], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=False)
    assert bad.returncode == 2 and "missing.html" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
