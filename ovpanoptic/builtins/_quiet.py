"""Importing third-party modules without their deprecation noise.

detectron2 decorates functions with ``torch.jit.script`` at import time, and torch answers each with
a ``FutureWarning`` the user can do nothing about. The built-ins import such modules through
:func:`import_quietly`, which silences ``FutureWarning`` and ``DeprecationWarning`` raised while the
module is imported (and only then: later warnings are shown as usual).
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

__all__ = ["import_quietly", "require"]


def import_quietly(name: str) -> ModuleType:
    """:func:`importlib.import_module` with import-time ``FutureWarning``/``DeprecationWarning`` silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module(name)


def require(module: str, what: str, install: str) -> None:
    """Check (without importing it) that ``module`` is installed, when a component is built, so a
    missing package is a start-up error rather than a failure at the first image.

    :raises MissingDependencyError: naming ``what`` needs it and the ``install`` command.
    """
    import importlib.util

    from ..errors import MissingDependencyError

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"{what} needs the package {module!r}, which is not installed: {install}")
