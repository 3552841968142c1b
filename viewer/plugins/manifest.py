"""Plugin manifests: the declarative description of what a plugin adds (DESIGN.md "Plugins").

A manifest is YAML shipped inside the plugin's package. It holds no executable content: code is
named by `python_name` ("package.module:attribute", checked by a pattern) and imported only when
the contribution is first used, so a manifest can be validated, listed and shown without running
any of the plugin's code. `Manifest.from_file` checks every field and names the file and field.

A panel declares `area` (left, right, top or bottom; default right) and `show` (true: the viewer
docks it when its window opens; false, the default: it waits in View > Plugin panels).
A report figure names fn(records, folder, audience) -> PNG paths: pictures made from a report's
findings (NODULE dicts), e.g. growth charts, for the PDF (audience "report") or for the patient
in consultation mode ("patient": plain words, no risk wording).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from viewer.core.errors import RadSightError

API_VERSION = 1  # bumped when a contribution's calling convention changes incompatibly
KINDS = ("commands", "analyses", "panels", "report_figures", "report_templates", "models")
CODE_KINDS = ("commands", "analyses", "panels", "report_figures")  # contributions that name code (python_name)
FILE_KINDS = ("report_templates", "models")      # contributions that name files inside the plugin
PANEL_AREAS = ("left", "right", "top", "bottom")
ARGUMENT_ACTIONS = ("store", "store_true", "append")
ARGUMENT_TYPES = {"str": str, "int": int, "float": float}
TOP_LEVEL = ("name", "version", "display_name", "description", "radsight_api", "contributions")

PYTHON_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_-]*$")  # plugin names, contribution ids, CLI command names
OPTION = re.compile(r"^--[a-z][a-z0-9-]*$")
POSITIONAL = re.compile(r"^[a-z][a-z0-9_]*$")


class ManifestError(RadSightError):
    """A manifest that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Argument:
    """One argparse argument of a plugin command, declared so that `radsight --help` and argument
    parsing work without importing the plugin."""

    name: str  # "path" (positional) or "--at" (option)
    help: str = ""
    required: bool = False
    action: str = "store"
    type: str = "str"
    default: str | int | float | bool | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    def add_to(self, parser) -> None:
        """Add this argument to an argparse parser."""
        kwargs: dict = {"help": self.help or None}
        if self.action == "store_true":
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = ARGUMENT_TYPES[self.type]
            if self.action == "append":
                kwargs["action"] = "append"
            if self.choices:
                kwargs["choices"] = list(self.choices)
            if self.metavar:
                kwargs["metavar"] = self.metavar
            if self.default is not None:
                kwargs["default"] = self.default
        if not self.positional:
            kwargs["required"] = self.required
        parser.add_argument(self.name, **kwargs)


@dataclass(frozen=True)
class ContributionSpec:
    """One entry of a manifest's `contributions`. Code kinds carry python_name; file kinds carry
    path (resolved against the manifest's folder); panels carry area and show (docked when the
    window opens); commands carry arguments."""

    kind: str
    id: str
    title: str
    python_name: str | None = None
    path: Path | None = None
    area: str | None = None
    arguments: tuple[Argument, ...] = ()
    show: bool = False

    def to_json(self) -> dict:
        data: dict = {"kind": self.kind, "id": self.id, "title": self.title}
        if self.python_name:
            data["python_name"] = self.python_name
        if self.path is not None:
            data["path"] = str(self.path)
        if self.area:
            data["area"] = self.area
        if self.kind == "panels":
            data["show"] = self.show
        if self.arguments:
            data["arguments"] = [a.name for a in self.arguments]
        return data


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    display_name: str
    description: str
    radsight_api: int
    contributions: tuple[ContributionSpec, ...]
    source: str  # the file (or resource) it was read from, for messages

    @classmethod
    def from_file(cls, path: Path | str) -> "Manifest":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read the plugin manifest ({exc})") from None
        return cls.from_text(text, str(path), root=path.parent)

    @classmethod
    def from_text(cls, text: str, source: str = "<manifest>", root: Path | None = None) -> "Manifest":
        """Parse and check a manifest. `root` is the folder that relative paths (templates,
        models) are resolved against and checked to exist in; None skips the existence check."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ManifestError(f"{source}: not valid YAML{where}: {problem}") from None
        check = _Checker(source)
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: a plugin manifest is a YAML mapping with {', '.join(TOP_LEVEL)}; "
                                f"got {type(data).__name__}")
        check.unknown(data, TOP_LEVEL, "the manifest")
        name = check.text(data, "name", pattern=IDENTIFIER)
        api = data.get("radsight_api")
        if not isinstance(api, int) or isinstance(api, bool):
            raise ManifestError(f"{source}: field 'radsight_api' must be an integer (this RadSight speaks "
                                f"plugin API {API_VERSION}); got {api!r}")
        if api != API_VERSION:
            raise ManifestError(f"{source}: plugin {name!r} is written for plugin API {api}, this RadSight speaks "
                                f"API {API_VERSION}; install a version of the plugin made for this RadSight")
        version = data.get("version")
        if isinstance(version, (int, float)) and not isinstance(version, bool):
            version = str(version)  # YAML reads 1.0 as a number
        if not isinstance(version, str) or not version.strip():
            raise ManifestError(f"{source}: field 'version' must be a version string such as \"1.0.0\"; got {version!r}")
        contributions = data.get("contributions", {}) or {}
        if not isinstance(contributions, dict):
            raise ManifestError(f"{source}: field 'contributions' must be a mapping of "
                                f"{', '.join(KINDS)} to lists; got {type(contributions).__name__}")
        check.unknown(contributions, KINDS, "'contributions'")
        specs: list[ContributionSpec] = []
        for kind in KINDS:
            items = contributions.get(kind) or []
            if not isinstance(items, list):
                raise ManifestError(f"{source}: 'contributions.{kind}' must be a list; got {type(items).__name__}")
            seen: set[str] = set()
            for i, item in enumerate(items):
                spec = check.contribution(kind, i, item, root)
                if spec.id in seen:
                    raise ManifestError(f"{source}: 'contributions.{kind}' declares id {spec.id!r} twice")
                seen.add(spec.id)
                specs.append(spec)
        return cls(name=name, version=version.strip(),
                   display_name=check.text(data, "display_name", required=False) or name,
                   description=check.text(data, "description", required=False) or "",
                   radsight_api=api, contributions=tuple(specs), source=source)

    def of_kind(self, kind: str) -> list[ContributionSpec]:
        return [c for c in self.contributions if c.kind == kind]


class _Checker:
    """Field checks that name the manifest file and the field's path in every message."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str) -> None:
        raise ManifestError(f"{self.source}: {message}")

    def unknown(self, data: dict, allowed: tuple[str, ...], where: str) -> None:
        extra = sorted(str(k) for k in data if k not in allowed)
        if extra:
            self.fail(f"{where} has unknown field(s) {', '.join(map(repr, extra))}; allowed: {', '.join(allowed)} "
                      "(a typo, or a manifest for a newer RadSight)")

    def text(self, data: dict, key: str, where: str = "", required: bool = True, pattern: re.Pattern | None = None):
        value = data.get(key)
        label = f"{where}.{key}" if where else key
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"field '{label}' is required and must be a non-empty string; got {value!r}")
        if pattern is not None and not pattern.match(value):
            self.fail(f"field '{label}' is {value!r}, which does not match {pattern.pattern}")
        return value.strip()

    def contribution(self, kind: str, i: int, item, root: Path | None) -> ContributionSpec:
        where = f"contributions.{kind}[{i}]"
        if kind in FILE_KINDS and isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict):
            self.fail(f"'{where}' must be a mapping; got {type(item).__name__}")
        if kind in CODE_KINDS:
            allowed = {"commands": ("id", "title", "python_name", "arguments"),
                       "analyses": ("id", "title", "python_name"),
                       "report_figures": ("id", "title", "python_name"),
                       "panels": ("id", "title", "python_name", "area", "show")}[kind]
            self.unknown(item, allowed, f"'{where}'")
            cid = self.text(item, "id", where, pattern=IDENTIFIER)
            python_name = self.text(item, "python_name", where)
            if not PYTHON_NAME.match(python_name):
                self.fail(f"field '{where}.python_name' is {python_name!r}; it must name code as "
                          "'package.module:attribute' (no expressions)")
            area, show = None, False
            if kind == "panels":
                area = item.get("area", "right")
                if area not in PANEL_AREAS:
                    self.fail(f"field '{where}.area' is {area!r}; use one of {', '.join(PANEL_AREAS)}")
                show = item.get("show", False)
                if not isinstance(show, bool):
                    self.fail(f"field '{where}.show' must be true or false (dock the panel when the window "
                              f"opens); got {show!r}")
            arguments = self.arguments(item.get("arguments") or [], where) if kind == "commands" else ()
            return ContributionSpec(kind, cid, self.text(item, "title", where), python_name=python_name,
                                    area=area, arguments=arguments, show=show)
        self.unknown(item, ("id", "title", "path"), f"'{where}'")
        rel = self.text(item, "path", where)
        relative = Path(rel)
        if relative.is_absolute() or ".." in relative.parts:
            self.fail(f"field '{where}.path' is {rel!r}; it must be a path inside the plugin's package")
        path = relative if root is None else root / relative
        if root is not None and not path.exists():
            self.fail(f"field '{where}.path': {path} does not exist (not packaged with the plugin?)")
        cid = self.text(item, "id", where, required=False, pattern=IDENTIFIER) or relative.stem.lower()
        return ContributionSpec(kind, cid, self.text(item, "title", where, required=False) or cid, path=path)

    def arguments(self, items, where: str) -> tuple[Argument, ...]:
        if not isinstance(items, list):
            self.fail(f"'{where}.arguments' must be a list; got {type(items).__name__}")
        out = []
        for j, item in enumerate(items):
            at = f"{where}.arguments[{j}]"
            if not isinstance(item, dict):
                self.fail(f"'{at}' must be a mapping; got {type(item).__name__}")
            self.unknown(item, ("name", "help", "required", "action", "type", "default", "choices", "metavar"),
                         f"'{at}'")
            name = self.text(item, "name", at)
            if not (OPTION.match(name) or POSITIONAL.match(name)):
                self.fail(f"field '{at}.name' is {name!r}; use 'name' (positional) or '--name' (option)")
            if name in ("--json", "--help"):
                self.fail(f"field '{at}.name' is {name!r}, which every command gets from RadSight itself")
            action = item.get("action", "store")
            if action not in ARGUMENT_ACTIONS:
                self.fail(f"field '{at}.action' is {action!r}; use one of {', '.join(ARGUMENT_ACTIONS)}")
            kind = item.get("type", "str")
            if kind not in ARGUMENT_TYPES:
                self.fail(f"field '{at}.type' is {kind!r}; use one of {', '.join(ARGUMENT_TYPES)}")
            required = item.get("required", False)
            if not isinstance(required, bool):
                self.fail(f"field '{at}.required' must be true or false; got {required!r}")
            if (action != "store" or required) and not name.startswith("--"):
                self.fail(f"'{at}': a positional argument takes neither 'action: {action}' nor 'required'")
            default = item.get("default")
            if default is not None and not isinstance(default, (str, int, float, bool)):
                self.fail(f"field '{at}.default' must be a plain value; got {type(default).__name__}")
            choices = item.get("choices")
            if choices is not None and (not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)):
                self.fail(f"field '{at}.choices' must be a list of strings; got {choices!r}")
            out.append(Argument(name, str(item.get("help") or ""), required, action, kind, default,
                                tuple(choices) if choices else None, item.get("metavar")))
        return tuple(out)
