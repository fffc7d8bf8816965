"""CVAT: "CVAT for images 1.1", written by the ``cvat`` exporter and read through Datumaro.

* :mod:`.writer`: :class:`CvatExporter` (``--format cvat``): ``OUTDIR/cvat/annotations.xml`` (one
  ``<mask>`` per segment, scores in percent) and ``OUTDIR/cvat/images/``;
* :mod:`.reader`: :func:`read_cvat` (``--gt-format cvat``): an export's XML, parsed by Datumaro's
  ``cvat`` importer, painted into one id map per image; :func:`cvat_file`: the XML a folder stands for;
  :func:`check_cvat`: the file's own checks, without categories.

Detection (:func:`detect`): an ``.xml`` file, or a folder for which :func:`cvat_file` finds an XML
with CVAT's ``<annotations>`` root (``annotations.xml``, Datumaro's ``default.xml``/``<subset>.xml``,
beside, in ``annotations/`` or in ``cvat/``).
"""

from __future__ import annotations

from ..probe import Probe
from .reader import CVAT_XML_NAME, check_cvat, cvat_file, is_cvat_xml, read_cvat
from .writer import CVAT_FOLDER, CvatConfig, CvatExporter, mask_rle

__all__ = [
    "CVAT_FOLDER",
    "CVAT_XML_NAME",
    "FORMAT",
    "CvatConfig",
    "CvatExporter",
    "check_cvat",
    "cvat_file",
    "detect",
    "is_cvat_xml",
    "mask_rle",
    "read_cvat",
]

#: The format's name (exporter, ``--gt-format``).
FORMAT = "cvat"


def detect(probe: Probe) -> bool:
    """An ``.xml`` file, or a folder holding a CVAT XML (:func:`cvat_file`).

    :raises EvaluationError: the folder holds several CVAT XML files where one is looked for.
    """
    if probe.is_file:
        return probe.suffix == ".xml"
    return cvat_file(probe.path) is not None
