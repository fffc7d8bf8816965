"""The Label Studio labelling config: written for a vocabulary (:func:`labelling_config`, the
``label-studio`` exporter's ``label-studio.xml``) and read back (:func:`parse_labelling_config`, what
the ML backend takes from a project).

``<View><Image name=TO value="$image"/><BrushLabels name=FROM toName=TO>`` with one ``<Label
value=NAME background="#rrggbb"/>`` per class (Label Studio's ``BrushLabels`` / ``PolygonLabels``
tags). Class names are XML-escaped; a name with characters XML cannot hold is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree import ElementTree

from ...errors import ExportError, OvpanopticError
from ...types import Vocabulary

__all__ = ["LabellingConfigError", "ProjectConfig", "check_label_name", "labelling_config", "parse_labelling_config"]

#: Characters XML 1.0 cannot hold (C0 controls but tab, newline and carriage return; surrogates;
#: U+FFFE/U+FFFF). The vocabulary refuses controls already; this guards names from any source.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class LabellingConfigError(OvpanopticError, ValueError):
    """A labelling config that names no ``BrushLabels`` on an ``Image`` (or is no XML)."""


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def check_label_name(name: str) -> None:
    """Refuse a class name that Label Studio's XML config cannot hold.

    :raises ExportError: naming the class and the character.
    """
    bad = _XML_FORBIDDEN.search(name)
    if bad:
        raise ExportError(
            f"class name {name!r} contains the character U+{ord(bad.group()):04X}, which a Label Studio labelling "
            "config (XML 1.0) cannot hold: rename the class (e.g. --classes with the character removed)"
        )


def labelling_config(
    vocabulary: Vocabulary,
    *,
    from_name: str = "label",
    to_name: str = "image",
    data_key: str = "image",
    polygons: bool = False,
    polygon_name: str = "polygon",
    interactive: bool = False,
) -> str:
    """The Label Studio labelling config (XML) for a vocabulary's classes.

    :param interactive: add Label Studio's "smart" ``KeyPointLabels`` (``point``) and
        ``RectangleLabels`` (``box``) tags, whose clicks an ML backend answers with a mask
        (``ovpanoptic serve label-studio``).
    :return: ``<View><Image .../><BrushLabels ...><Label value=... background=.../>...</BrushLabels></View>``
        (plus ``<PolygonLabels>`` with the same labels when ``polygons``), names escaped by the XML writer.
    :raises ExportError: a class name XML cannot hold.
    """
    view = ElementTree.Element("View")
    ElementTree.SubElement(view, "Image", {"name": to_name, "value": f"${data_key}", "zoom": "true"})
    tags = [("BrushLabels", from_name, {})] + ([("PolygonLabels", polygon_name, {})] if polygons else [])
    if interactive:
        tags += [("KeyPointLabels", "point", {"smart": "true"}), ("RectangleLabels", "box", {"smart": "true"})]
    for tag, name, extra in tags:
        labels = ElementTree.SubElement(view, tag, {"name": name, "toName": to_name, **extra})
        for category in vocabulary.categories:
            check_label_name(category.name)
            ElementTree.SubElement(labels, "Label", {"value": category.name, "background": _hex(category.display_color)})
    ElementTree.indent(view)
    return ElementTree.tostring(view, encoding="unicode") + "\n"


@dataclass(frozen=True)
class ProjectConfig:
    """What the backend reads from a project's labelling config.

    :param from_name: the ``BrushLabels`` tag's name.
    :param to_name: the ``Image`` tag it labels.
    :param data_key: the task data field with the image URL (the Image tag's ``value`` without ``$``).
    :param labels: the ``BrushLabels`` label values, in order.
    """

    from_name: str
    to_name: str
    data_key: str
    labels: tuple[str, ...]


def parse_labelling_config(text: str) -> ProjectConfig:
    """The first ``BrushLabels`` tag of a labelling config and the ``Image`` tag it labels.

    :raises LabellingConfigError: the config is not XML, has no ``BrushLabels`` on an ``Image``, or
        the image's ``value`` is not a ``$field``.
    """
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise LabellingConfigError(f"the labelling config is not valid XML ({exc})") from None
    images = {el.get("name"): el for el in root.iter() if el.tag.lower() == "image"}
    for el in root.iter():
        if el.tag.lower() == "brushlabels" and el.get("toName") in images:
            value = images[el.get("toName")].get("value") or ""
            if not value.startswith("$") or len(value) < 2:
                raise LabellingConfigError(f"the Image tag {el.get('toName')!r} must take its URL from a task field (value=\"$image\"), got {value!r}")
            labels = tuple(label.get("value") or "" for label in el if label.tag.lower() == "label")
            return ProjectConfig(el.get("name") or "", el.get("toName") or "", value[1:], tuple(x for x in labels if x))
    raise LabellingConfigError(
        "the labelling config has no BrushLabels tag on an Image tag: create the project with the config that "
        "'ovpanoptic serve label-studio --print-config' (or the label-studio exporter's label-studio.xml) gives",
    )
