"""Label Studio: the ``label-studio`` exporter, the reader of Label Studio's JSON export, the
labelling config and the push into a Label Studio project.

* :mod:`.writer`: :class:`LabelStudioExporter` (``--format label-studio``): ``label-studio.json``
  (tasks with ``brushlabels`` predictions, RLE by the Label Studio SDK's ``mask2rle``; numbered
  files over ``max_file_mb``, :func:`split_tasks`, :func:`task_files`) and ``label-studio.xml``;
* :mod:`.config`: :func:`labelling_config` (the XML written beside the tasks) and
  :func:`parse_labelling_config` (what the ML backend, :mod:`ovpanoptic.serve.label_studio`,
  reads from a project);
* :mod:`.reader`: :func:`read_label_studio` (``--gt-format label-studio``): an export's brush
  (SDK ``decode_rle``) and polygon regions painted into one id map per task;
  :func:`embedded_categories`: the category table the exporter put in the tasks' ``meta``;
* :mod:`.urls`: :func:`local_files_url` / :func:`local_files_path`: the ``/data/local-files/?d=``
  image links, percent-encoded as Label Studio's local-files storage writes them and decoded back
  (writer, reader, push and the ML backend share them);
* :mod:`.push`: :func:`push_label_studio` (``ovpanoptic push label-studio``): a project from an
  output folder, through the SDK's client. It lives here, beside the files it sends, because it is
  the one other place that knows how the tasks files are split (:func:`task_files`).

Detection (:func:`detect`): a ``.json`` list (Label Studio's export), a ``.json`` object that is one
task (``data``) or wraps them (``tasks``), or a folder holding ``label-studio.json``.
"""

from __future__ import annotations

from ..probe import Probe
from .config import LabellingConfigError, ProjectConfig, check_label_name, labelling_config, parse_labelling_config
from .reader import LabelStudioSet, embedded_categories, fill_polygon, read_label_studio
from .urls import local_files_path, local_files_url
from .writer import (
    DEFAULT_MAX_FILE_MB,
    LABEL_STUDIO_IMPORT_LIMIT_BYTES,
    META_KEY,
    LabelStudioConfig,
    LabelStudioExporter,
    prediction_score,
    split_tasks,
    task_files,
)

__all__ = [
    "DEFAULT_MAX_FILE_MB",
    "FORMAT",
    "JSON_NAME",
    "LABEL_STUDIO_IMPORT_LIMIT_BYTES",
    "META_KEY",
    "LabelStudioConfig",
    "LabelStudioExporter",
    "LabelStudioSet",
    "LabellingConfigError",
    "ProjectConfig",
    "check_label_name",
    "detect",
    "embedded_categories",
    "fill_polygon",
    "labelling_config",
    "local_files_path",
    "local_files_url",
    "parse_labelling_config",
    "prediction_score",
    "read_label_studio",
    "split_tasks",
    "task_files",
]

#: The format's name (exporter, ``--gt-format``).
FORMAT = "label-studio"

#: The tasks file in an ovpanoptic output folder (the exporter's ``json_name`` default).
JSON_NAME = "label-studio.json"


def detect(probe: Probe) -> bool:
    """A ``.json`` list, a ``.json`` object with ``data`` or a ``tasks`` list (not Cityscapes'
    ``cityscapes_panoptic*``), or a folder holding ``label-studio.json``."""
    if not probe.is_file:
        return (probe.path / JSON_NAME).is_file()
    if probe.suffix != ".json":
        return False
    if probe.head.startswith(b"["):
        return True
    if not probe.json_object() or probe.path.name.startswith("cityscapes_panoptic"):
        return False
    data = probe.json
    return isinstance(data, dict) and ("data" in data or isinstance(data.get("tasks"), list))
