"""The plugin API (DESIGN.md "Plugins"): entry points in group `radsight.plugins` point at YAML
manifests; contributions (commands, analyses, panels, report templates, models) name their code
with `python_name` and are imported only when first used. Importing this package is cheap."""

from viewer.plugins.discovery import (GROUP, Contribution, Plugin, PluginError, PluginProblem, PluginSet,
                                      contributions, discover, problems)
from viewer.plugins.manifest import API_VERSION, KINDS, Argument, ContributionSpec, Manifest, ManifestError

__all__ = ["API_VERSION", "GROUP", "KINDS", "Argument", "Contribution", "ContributionSpec", "Manifest",
           "ManifestError", "Plugin", "PluginError", "PluginProblem", "PluginSet", "contributions", "discover",
           "problems"]
