"""The plugin API on real entry points: throw-away distributions written to a folder on sys.path
(a `*.dist-info` with METADATA and entry_points.txt, as importlib.metadata reads installed
packages), the installed lung-nodule plugin, and its `radsight measure` command on a synthetic
study against the generator's ground truth (volume within 10%, Lung-RADS category as the
guideline table gives for the true size)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import viewer.plugins
from viewer.analysis.guidelines import lung_rads_v2022
from viewer.demo import generate_demo
from viewer.plugins import Manifest, ManifestError, PluginError, discover
from viewer.plugins.manifest import API_VERSION

ROOT = Path(__file__).resolve().parents[1]
FAKE_PACKAGES = ("goodplug", "dupplug", "badyaml", "noname", "badname", "badkind", "oldapi")

GOOD_MANIFEST = f"""
name: good
version: "1.2"
display_name: Good plugin
description: a plugin written by the tests
radsight_api: {API_VERSION}
contributions:
  commands:
    - id: hello
      title: say hello
      python_name: goodplug.tools:hello
      arguments:
        - name: who
        - name: --times
          type: int
          default: 1
  analyses:
    - id: echo
      title: echoes what it was given
      python_name: goodplug.tools:echo
    - id: broken
      title: always fails
      python_name: goodplug.tools:fail
    - id: missing
      title: declared, module not written
      python_name: goodplug.not_written:run
    - id: badimport
      title: module with a failing import
      python_name: goodplug.badimport:run
  panels:
    - id: side
      title: Side panel
      area: left
      python_name: goodplug.tools:echo
  report_templates:
    - templates/short.md
  models:
    - models
"""

TOOLS = """
import json

LOADED = True


def hello(args):
    print(json.dumps({"hello": args.who, "times": args.times, "json": args.json}))
    return 0


def echo(context):
    return {"nodules": [{"id": "E1"}], "outputs": {"echo": str(context.out_dir)},
            "echo": {"priors": [str(p) for p in context.prior_paths], "shape": list(context.volume.shape),
                     "plugin_sees_models": len(context.models)}}


def fail(context):
    raise RuntimeError("the echo plugin's analysis broke on purpose")
"""


def _manifest(name: str, body: str) -> str:
    return f"name: {name}\nversion: '1'\nradsight_api: {API_VERSION}\n{body}"


BROKEN = {
    "badyaml": "name: badyaml\nversion: [1, 2\n",
    "noname": f"version: '1'\nradsight_api: {API_VERSION}\n",
    "badname": _manifest("badname", "contributions:\n  commands:\n    - id: run\n      title: t\n"
                                    "      python_name: \"os.system('rm -rf /')\"\n"),
    "badkind": _manifest("badkind", "contributions:\n  widgets:\n    - id: w\n"),
    "oldapi": "name: oldapi\nversion: '1'\nradsight_api: 999\n",
}


def _distribution(site: Path, dist: str, ep_name: str, package: str, manifest: str, files: dict | None = None) -> None:
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[radsight.plugins]\n{ep_name} = {package}:manifest.yaml\n")
    pkg = site / package
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "manifest.yaml").write_text(manifest)
    for rel, text in (files or {}).items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A folder of fake installed plugins on sys.path: one good, one duplicating the good one's
    command id, and one per kind of broken manifest."""
    site = tmp_path_factory.mktemp("site")
    _distribution(site, "goodplug", "good", "goodplug", GOOD_MANIFEST,
                  {"tools.py": TOOLS, "badimport.py": "import a_module_nobody_installed\n",
                   "templates/short.md": "# {{ study }}\n"})
    _distribution(site, "dupplug", "zz-dup", "dupplug", _manifest(
        "dup", "contributions:\n  commands:\n    - id: hello\n      title: another hello\n"
               "      python_name: dupplug.tools:hello\n"))
    for package, text in BROKEN.items():
        _distribution(site, package, package, package, text)
    # A model folder shipped by the plugin: the bundled classifier under another id.
    model = site / "goodplug" / "models" / "classifier"
    shutil.copytree(ROOT / "models" / "radsight-demo-nodule-classifier", model)
    card = json.loads((model / "card.json").read_text())
    (model / "card.json").write_text(json.dumps(dict(card, id="plugin-classifier")))
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))
    for name in [m for m in sys.modules if m.split(".")[0] in FAKE_PACKAGES]:
        del sys.modules[name]
    discover(refresh=True)


@pytest.fixture
def plugins(site):
    return discover(refresh=True)


def test_a_valid_plugin_is_found_with_its_contributions(plugins, site):
    good = next(p for p in plugins.plugins if p.name == "good")
    assert good.distribution == "goodplug" and good.manifest.version == "1.2"
    assert good.manifest.display_name == "Good plugin"
    (hello,) = [c for c in plugins.contributions("commands") if c.plugin == "good"]
    assert hello.id == "hello" and hello.spec.python_name == "goodplug.tools:hello"
    assert [a.name for a in hello.spec.arguments] == ["who", "--times"]
    assert [c.id for c in plugins.contributions("analyses") if c.plugin == "good"] == \
        ["echo", "broken", "missing", "badimport"]
    (panel,) = [c for c in plugins.contributions("panels") if c.plugin == "good"]
    assert panel.spec.area == "left"
    (template,) = [c for c in plugins.contributions("report_templates") if c.plugin == "good"]
    assert template.path == site / "goodplug" / "templates" / "short.md" and template.id == "short"


def test_plugin_models_join_the_model_registry(plugins, site):
    from viewer.inference.registry import discover as discover_models

    registry = discover_models()
    card = registry.get("plugin-classifier")
    assert card.path == site / "goodplug" / "models" / "classifier" / "model.onnx"
    assert card.task == "classification" and registry.get("radsight-demo-nodule-classifier").path != card.path


def test_discovery_imports_no_plugin_code(plugins):
    assert plugins.get("commands", "hello") is not None
    assert not [m for m in sys.modules if m.split(".")[0] in FAKE_PACKAGES]


def test_load_imports_on_first_use_and_caches(plugins):
    echo = plugins.get("analyses", "echo")
    fn = echo.load()
    assert "goodplug.tools" in sys.modules and sys.modules["goodplug.tools"].LOADED
    assert echo.load() is fn


@pytest.mark.parametrize("package, words", [
    ("badyaml", "not valid YAML at line 3"),
    ("noname", "field 'name' is required"),
    ("badname", "contributions.commands[0].python_name"),
    ("badkind", "'widgets'"),
    ("oldapi", "plugin API 999"),
])
def test_a_broken_manifest_is_a_problem_naming_plugin_and_file(plugins, site, package, words):
    (problem,) = [p for p in plugins.problems if p.plugin == package]
    assert words in problem.reason
    assert str(site / package / "manifest.yaml") in problem.reason
    assert package not in [p.name for p in plugins.plugins]
    assert "good" in [p.name for p in plugins.plugins]  # the others still load


def test_a_duplicate_id_is_a_problem_and_the_first_plugin_keeps_it(plugins):
    assert plugins.get("commands", "hello").plugin == "good"
    (problem,) = [p for p in plugins.problems if p.plugin == "dup"]
    assert "'hello'" in problem.reason and "plugin good" in problem.reason


@pytest.mark.parametrize("analysis, words", [
    ("missing", "module goodplug.not_written is not installed"),
    ("badimport", "ModuleNotFoundError"),
])
def test_an_import_failure_on_load_is_a_problem_and_a_plugin_error(plugins, analysis, words):
    contribution = plugins.get("analyses", analysis)
    before = len(plugins.problems)
    with pytest.raises(PluginError, match="plugin good") as err:
        contribution.load()
    assert words in str(err.value)
    assert len(plugins.problems) == before + 1
    assert plugins.problems[-1].plugin == "good" and words in plugins.problems[-1].reason


@pytest.mark.parametrize("text, field", [
    ("name: x\nversion: '1'\nradsight_api: '1'\n", "'radsight_api' must be an integer"),
    (_manifest("x", "contributions:\n  panels:\n    - id: p\n      title: P\n      python_name: a.b:c\n"
                    "      area: middle\n"), "contributions.panels[0].area"),
    (_manifest("x", "contributions:\n  report_templates:\n    - ../outside.md\n"), "contributions.report_templates[0].path"),
    (_manifest("x", "contributions:\n  commands:\n    - id: c\n      title: C\n      python_name: a.b:c\n"
                    "      arguments:\n        - name: --json\n"), "contributions.commands[0].arguments[0].name"),
    (_manifest("x", "colour: blue\n"), "unknown field(s) 'colour'"),
])
def test_manifest_errors_name_the_source_and_the_field(text, field):
    with pytest.raises(ManifestError) as err:
        Manifest.from_text(text, "somewhere/manifest.yaml")
    assert str(err.value).startswith("somewhere/manifest.yaml: ") and field in str(err.value)


def _radsight(*args: str, env_path: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(env_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "viewer.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT, **kwargs)


def test_plugins_list_json_shows_plugins_contributions_and_problems(site):
    proc = _radsight("plugins", "list", "--json", env_path=site)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    names = [p["name"] for p in data["plugins"]]
    assert {"good", "dup", "lung-nodules"} <= set(names)
    good = next(p for p in data["plugins"] if p["name"] == "good")
    assert [c["id"] for c in good["contributions"]["analyses"]] == ["echo", "broken", "missing", "badimport"]
    assert {p["plugin"] for p in data["problems"]} >= set(BROKEN) | {"dup"}


def test_a_plugin_command_parses_declared_arguments_and_runs(site):
    proc = _radsight("hello", "world", "--times", "3", "--json", env_path=site)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"hello": "world", "times": 3, "json": True}


def test_the_installed_lung_nodule_plugin_is_discovered_without_importing_it():
    code = ("import json, sys; from viewer.cli import build_parser; build_parser(); "
            "from viewer.plugins import discover; s = discover(); "
            "p = next(p for p in s.plugins if p.name == 'lung-nodules'); "
            "print(json.dumps({'plugin': p.to_json(), 'problems': [x.to_json() for x in s.problems], "
            "'imported': [m for m in sys.modules if m.split('.')[0] == 'radsight_lung_nodules']}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["imported"] == [] and data["problems"] == []
    plugin = data["plugin"]
    assert plugin["distribution"] == "radsight-lung-nodules"
    names = {k: {c["id"]: c.get("python_name") for c in v} for k, v in plugin["contributions"].items()}
    assert names["commands"] == {"measure": "radsight_lung_nodules.commands:measure"}
    assert names["analyses"] == {"nodules": "radsight_lung_nodules.analysis:run"}
    assert names["panels"] == {"nodules": "radsight_lung_nodules.panel:create_panel"}
    assert names["report_figures"] == {"growth-charts": "radsight_lung_nodules.chart:report_figures"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    demo = generate_demo(tmp_path_factory.mktemp("plugin-demo"), preset="small", n_visits=1, seed=5)
    return demo.visits[0].study_dir, demo.ground_truth()["visits"][0]["nodules"]


def test_analyses_run_with_the_context_and_a_failure_names_the_plugin(site, plugins, demo, monkeypatch, tmp_path,
                                                                      capsys):
    from viewer.cli import _error_line
    from viewer.plugins.study_analysis import run_plugin_analyses

    study, _ = demo
    ours = [c for c in plugins.contributions("analyses") if c.id in ("echo", "broken")]
    monkeypatch.setattr(viewer.plugins, "contributions", lambda kind: ours)
    data = {"series_uid": None, "models": [], "nodules": [], "outputs": {"seg": []}}
    errors = run_plugin_analyses(study, data, tmp_path, prior_paths=[study], report=_error_line("analyze"))
    assert data["nodules"] == [{"id": "E1"}]
    assert data["outputs"] == {"seg": [], "echo": str(tmp_path)}
    assert data["echo"]["priors"] == [str(study)] and len(data["echo"]["shape"]) == 3
    assert errors == data["analysis_errors"] and [e["analysis"] for e in errors] == ["broken"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plugin good" in err[0] and "broke on purpose" in err[0]


def _margin(diameter: float) -> float:
    return min(abs(diameter - t) for t in (6.0, 8.0, 15.0))


@pytest.mark.slow
def test_measure_prints_a_nodule_record_matching_ground_truth(demo):
    study, nodules = demo
    candidates = [n for n in nodules if n["present"] and n["kind"] == "solid" and not n["juxtapleural"]
                  and not n["juxtavascular"] and n["equivalent_diameter_mm"] >= 5]
    # Away from a Lung-RADS size threshold, so a measurement error of a millimetre cannot flip it.
    nodule = max(candidates, key=lambda n: _margin(n["mean_diameter_mm"]))
    assert _margin(nodule["mean_diameter_mm"]) >= 1.0
    at = ",".join(f"{v:.2f}" for v in nodule["centre_lps_mm"])
    proc = _radsight("measure", str(study), "--at", at, "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert set(record) >= {"id", "tracking_uid", "centre_lps_mm", "volume_mm3", "long_axis_mm", "short_axis_mm",
                           "mean_diameter_mm", "mean_hu", "type", "scores", "lung_rads", "prior", "max_hu",
                           "solid_mean_diameter_mm", "juxtapleural", "source"}
    assert record["volume_mm3"] == pytest.approx(nodule["volume_mm3"], rel=0.10)
    assert np.linalg.norm(np.subtract(record["centre_lps_mm"], nodule["centre_lps_mm"])) < 1.5
    assert record["type"] == "solid" and record["source"] == "measured" and record["scores"] == {}
    assert record["prior"] is None and record["tracking_uid"] is None and record["juxtapleural"] is False
    expected = lung_rads_v2022("solid", nodule["mean_diameter_mm"], baseline=True)
    assert record["lung_rads"]["category"] == expected.category
    assert record["lung_rads"]["management"] == expected.management


def test_measure_in_the_air_outside_the_body_fails_with_one_line(demo):
    from viewer.dicom import load

    study, _ = demo
    volume = load(study)
    corner = volume.index_to_lps([2, 2, volume.shape[0] // 2])
    proc = _radsight("measure", str(study), "--at", ",".join(f"{v:.1f}" for v in corner), "--json")
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("radsight measure: error: "), proc.stderr
