"""Exception hierarchy.

Every error a user can cause derives from :class:`OvpanopticError` and carries a message that names
the problem and the fix. The CLI prints these messages without a traceback.
"""

from __future__ import annotations


class OvpanopticError(Exception):
    """Base class of every error ovpanoptic raises on purpose."""


class VocabularyError(OvpanopticError, ValueError):
    """A vocabulary (class names, stuff names, a named vocabulary) is invalid."""


class ConfigError(OvpanopticError, ValueError):
    """A preset, config file or ``--set`` override is invalid."""


class EvaluationError(OvpanopticError, ValueError):
    """Annotations or predictions are inconsistent or unreadable (missing prediction, unknown id, bad
    PNG, ...): raised by the format readers (:mod:`ovpanoptic.formats`) and the metrics
    (:mod:`ovpanoptic.evaluation`, which re-exports it)."""


class PluginError(OvpanopticError):
    """A plugin failed to load or register, clashes with another plugin, implements an unknown
    hook, or needs another plugin API version. Reported at start-up, before anything is written."""


class ComponentError(PluginError):
    """Plugin code failed at run time or broke the component contract.

    The message names the plugin (name and distribution), the component or hook, the call and
    the fix. ``plugin``, ``component`` and ``call`` carry the same facts for programs.
    """

    def __init__(self, message: str, *, plugin: str = "", component: str = "", call: str = "") -> None:
        super().__init__(message)
        self.plugin = plugin
        self.component = component
        self.call = call


class AmbiguousNameError(PluginError, ConfigError):
    """A component, vocabulary or prompt-template name chosen by the user is registered by more
    than one plugin. The message names every plugin and the qualified names (``PLUGIN:NAME``) that
    pick one. Raised only where the name is used; registering it is a start-up warning."""


class ComponentNotFoundError(OvpanopticError, LookupError):
    """A component named in the config is not provided by any installed, enabled plugin."""


class ImageReadError(OvpanopticError, ValueError):
    """An input image cannot be read or decoded."""


class InputError(OvpanopticError, ValueError):
    """An argument passed to the API or CLI is invalid (missing file, bad size, ...)."""


class WeightsError(OvpanopticError):
    """Model weights are missing, corrupt or do not match the architecture."""


class MissingDependencyError(OvpanopticError, ImportError):
    """An optional dependency that a component needs is not installed."""


class ExportError(OvpanopticError):
    """Results cannot be written where asked (e.g. the output folder holds another vocabulary's results)."""


class Cancelled(OvpanopticError):
    """The caller cancelled the run (raised from its progress callback, e.g. the demo's Cancel
    button). Guarded plugin calls let it through unchanged: it is nobody's fault."""


def require(module: str, what: str, install: str) -> None:
    """Check (without importing it) that ``module`` is installed, when a component is built, so a
    missing package is a start-up error rather than a failure at the first image.

    :raises MissingDependencyError: naming ``what`` needs it and the ``install`` command.
    """
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"{what} needs the package {module!r}, which is not installed: {install}")
