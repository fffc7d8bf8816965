"""Running third-party code without its deprecation noise.

torch answers every ``torch.jit.script`` call with a ``FutureWarning`` ("`torch.jit.script` is
deprecated") the user can do nothing about, and third-party packages call it at two moments:
detectron2 decorates functions with it when its modules are *imported*, and sam2 scripts its
image transforms whenever a ``SAM2ImagePredictor`` (or ``SAM2AutomaticMaskGenerator``) is
*constructed*. The built-ins import such modules through :func:`import_quietly` and construct such
objects inside :func:`quiet_deprecations`, which silence ``FutureWarning`` and
``DeprecationWarning`` raised meanwhile (and only then: later warnings are shown as usual).
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Iterator
from types import ModuleType

from ..errors import require  # re-exported: the built-ins import it from here

__all__ = ["import_quietly", "quiet_deprecations", "require"]


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Silence ``FutureWarning`` and ``DeprecationWarning`` inside the block: wrap only calls into
    third-party code whose deprecations the user cannot act on (imports, model constructors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def import_quietly(name: str) -> ModuleType:
    """:func:`importlib.import_module` with import-time ``FutureWarning``/``DeprecationWarning`` silenced."""
    with quiet_deprecations():
        return importlib.import_module(name)
