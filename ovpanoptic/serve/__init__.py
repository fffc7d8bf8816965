"""Servers that other tools call.

* :mod:`.label_studio`: Label Studio's ML backend protocol (``/health``, ``/setup``, ``/predict``,
  interactive prediction from keypoints and rectangles) answered by an ovpanoptic pipeline;
* :mod:`.http`: the HTTP server around it (127.0.0.1 by default, optional Basic authentication,
  request size limits, JSON errors, never a traceback).

Everything about Label Studio's files (the labelling config, regions, prediction scores) comes from
:mod:`ovpanoptic.formats.label_studio`. The package may import the core (pipeline, types, errors,
imageio), :mod:`ovpanoptic.formats` and the standard library; never
:mod:`ovpanoptic.builtins` (components are asked for by name through the pipeline), the CLI or the
demo. ``label_studio`` does not import ``http``; ``http`` serves any handler with a ``handle`` method.
"""

from __future__ import annotations

from .http import ServeOptions, check_exposure, make_server
from .label_studio import FetchPolicy, LabelStudioBackend

__all__ = ["FetchPolicy", "LabelStudioBackend", "ServeOptions", "check_exposure", "make_server"]
