"""Finding plugins: entry points in group `radsight.plugins`, each naming a manifest resource.

An entry point's value is "package:file" (e.g. `radsight_lung_nodules:manifest.yaml`). The file
is located through the import system's spec of the package, never by importing it, so listing
plugins runs none of their code. A plugin whose manifest cannot be read or checked becomes a
`PluginProblem` and the others carry on; the code a contribution names is imported on first use
(`Contribution.load`), and an import failure there is a problem too, raised as `PluginError`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path

from viewer.core.errors import RadSightError
from viewer.plugins.manifest import KINDS, ContributionSpec, Manifest, ManifestError

GROUP = "radsight.plugins"
SINGULAR = {"commands": "command", "analyses": "analysis", "panels": "panel", "report_figures": "report figure",
            "report_templates": "report template", "models": "model folder"}


class PluginError(RadSightError):
    """A plugin contribution could not be used; the message names the plugin and the reason."""


@dataclass(frozen=True)
class PluginProblem:
    plugin: str  # the entry point's name (or the manifest's plugin name)
    where: str   # the file, resource or python_name at fault
    reason: str

    def to_json(self) -> dict:
        return {"plugin": self.plugin, "where": self.where, "reason": self.reason}

    def __str__(self) -> str:
        return f"plugin {self.plugin}: {self.reason}"


@dataclass(frozen=True)
class Plugin:
    entry_point: str         # the entry point's name
    distribution: str | None  # the installed distribution that declared it
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    def to_json(self) -> dict:
        m = self.manifest
        return {"name": m.name, "version": m.version, "display_name": m.display_name,
                "description": m.description, "entry_point": self.entry_point, "distribution": self.distribution,
                "manifest": m.source, "radsight_api": m.radsight_api,
                "contributions": {k: [c.to_json() for c in m.of_kind(k)] for k in KINDS if m.of_kind(k)}}


_MISSING = object()


@dataclass(eq=False)
class Contribution:
    """A contribution of an installed plugin; `load()` imports what python_name names, once."""

    plugin: str
    spec: ContributionSpec
    owner: "PluginSet"
    _loaded: object = field(default=_MISSING, repr=False)

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def what(self) -> str:
        """"analysis 'nodules'": how messages name this contribution."""
        return f"{SINGULAR[self.kind]} {self.id!r}"

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def path(self) -> Path | None:
        return self.spec.path

    def load(self):
        """The object python_name names (imported on first call, then cached). Raises PluginError
        (and records a problem) when the module cannot be imported or lacks the attribute."""
        if self._loaded is not _MISSING:
            return self._loaded
        name = self.spec.python_name
        if name is None:
            raise PluginError(f"plugin {self.plugin}: {self.what} is a file ({self.path}), not code")
        module_name, _, attr = name.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # a plugin's import may fail in any way; it must not stop RadSight
            if isinstance(exc, ModuleNotFoundError) and exc.name and (module_name + ".").startswith(exc.name + "."):
                reason = (f"{self.what}: module {exc.name} is not installed (python_name {name}); "
                          "the plugin is incomplete or was installed without its code")
            elif isinstance(exc, AttributeError):
                reason = f"{self.what}: {module_name} has no attribute {attr!r} (python_name {name})"
            else:
                reason = (f"{self.what}: importing {name} failed: {type(exc).__name__}: {exc}"
                          " (a bug in the plugin or a missing dependency of it)")
            self.owner.add_problem(PluginProblem(self.plugin, name, reason))
            raise PluginError(f"plugin {self.plugin}: {reason}") from exc
        if not callable(obj):
            reason = f"{self.what}: {name} is a {type(obj).__name__}, not something that can be called"
            self.owner.add_problem(PluginProblem(self.plugin, name, reason))
            raise PluginError(f"plugin {self.plugin}: {reason}")
        self._loaded = obj
        return obj

    def to_json(self) -> dict:
        return {"plugin": self.plugin, **self.spec.to_json()}


@dataclass
class PluginSet:
    """What discovery found: the valid plugins, their contributions and every problem met."""

    plugins: list[Plugin] = field(default_factory=list)
    problems: list[PluginProblem] = field(default_factory=list)
    _contributions: list[Contribution] = field(default_factory=list, repr=False)

    def add_problem(self, problem: PluginProblem) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def add(self, plugin: Plugin) -> None:
        """Take a plugin's contributions; an id another plugin already contributed for the same
        kind is a problem and the first plugin keeps it."""
        for other in self.plugins:
            if other.name == plugin.name:
                self.add_problem(PluginProblem(plugin.entry_point, plugin.manifest.source,
                                               f"plugin name {plugin.name!r} is already used by the plugin from "
                                               f"{other.manifest.source}; this one is ignored"))
                return
        self.plugins.append(plugin)
        for spec in plugin.manifest.contributions:
            first = self.get(spec.kind, spec.id)
            if first is not None:
                self.add_problem(PluginProblem(plugin.name, plugin.manifest.source,
                                               f"{spec.kind} id {spec.id!r} is already contributed by plugin "
                                               f"{first.plugin}; the first one is kept"))
                continue
            self._contributions.append(Contribution(plugin.name, spec, self))

    def contributions(self, kind: str) -> list[Contribution]:
        if kind not in KINDS:
            raise ValueError(f"unknown contribution kind {kind!r}; use one of {', '.join(KINDS)}")
        return [c for c in self._contributions if c.kind == kind]

    def get(self, kind: str, contribution_id: str) -> Contribution | None:
        return next((c for c in self._contributions if c.kind == kind and c.id == contribution_id), None)

    def to_json(self) -> dict:
        return {"plugins": [p.to_json() for p in self.plugins], "problems": [p.to_json() for p in self.problems]}


def manifest_path(value: str) -> Path:
    """The file an entry point value "package:file" names, found without importing the package:
    the top-level package's spec gives its folder, sub-packages are folders below it."""
    package, sep, resource = value.partition(":")
    package, resource = package.strip(), resource.strip()
    if not sep or not package or not resource:
        raise ManifestError(f"entry point value {value!r} must be 'package:manifest.yaml'")
    parts = package.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError) as exc:
        raise ManifestError(f"package {parts[0]} cannot be located: {exc}") from None
    if spec is None or not spec.submodule_search_locations:
        raise ManifestError(f"package {parts[0]} (from entry point value {value!r}) is not installed, or is a "
                            "module rather than a package")
    for location in spec.submodule_search_locations:
        candidate = Path(location).joinpath(*parts[1:], resource)
        if candidate.is_file():
            return candidate
    places = ", ".join(str(Path(p).joinpath(*parts[1:])) for p in spec.submodule_search_locations)
    raise ManifestError(f"manifest {resource} not found in package {package} (looked in {places})")


def _scan() -> PluginSet:
    found = PluginSet()
    entry_points = sorted(importlib.metadata.entry_points(group=GROUP), key=lambda e: (e.name, e.value))
    seen: set[tuple[str, str]] = set()
    for ep in entry_points:
        if (ep.name, ep.value) in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add((ep.name, ep.value))
        try:
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            path = manifest_path(ep.value)
            manifest = Manifest.from_file(path)
        except ManifestError as exc:
            found.add_problem(PluginProblem(ep.name, ep.value, str(exc)))
            continue
        except Exception as exc:  # whatever an odd installation raises, it must not stop RadSight
            found.add_problem(PluginProblem(ep.name, ep.value, f"reading the manifest failed: "
                                                               f"{type(exc).__name__}: {exc}"))
            continue
        found.add(Plugin(ep.name, dist_name, manifest))
    return found


_lock = threading.Lock()
_cached: PluginSet | None = None


def discover(refresh: bool = False) -> PluginSet:
    """Installed plugins (read once per process; refresh=True reads the entry points again)."""
    global _cached
    with _lock:
        if _cached is None or refresh:
            if refresh:
                importlib.invalidate_caches()
            _cached = _scan()
        return _cached


def contributions(kind: str) -> list[Contribution]:
    return discover().contributions(kind)


def problems() -> list[PluginProblem]:
    return list(discover().problems)
