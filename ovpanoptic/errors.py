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


class PluginError(OvpanopticError):
    """A plugin failed to load, clashes with another plugin, or implements an unknown hook."""


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
