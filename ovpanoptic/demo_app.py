"""The demo moved to the :mod:`ovpanoptic.demo` package; this name keeps old imports working."""

from __future__ import annotations

from .demo import *  # noqa: F403
from .demo import __all__  # noqa: F401
