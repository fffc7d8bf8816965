"""The Cityscapes writers (``cityscapes``, ``cityscapes-panoptic`` exporters), through cityscapesscripts.

The ``cityscapes`` named vocabulary (the 19 evaluation classes, category id = Cityscapes label id)
is shipped with the others (:mod:`ovpanoptic.builtins.vocabularies`). Both exporters need the optional package
``cityscapesscripts`` (``pip install cityscapesscripts`` or ``pip install 'ovpanoptic[labelling]'``);
the format is Cityscapes' own (``mcordts/cityscapesScripts``: ``helpers/labels.py``,
``preparation/json2instanceImg.py``, ``json2labelImg.py``, ``createPanopticImgs.py``).

``cityscapes``
    Cityscapes' gtFine images, one kind of file per folder, each folder a Cityscapes root of its own:
    ``OUTDIR/labelIds/gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` (8-bit grayscale: the
    pixel's Cityscapes label id, 0 = ``unlabeled`` for void) and
    ``OUTDIR/instanceIds/gtFine/<split>/<city>/<name>_gtFine_instanceIds.png`` (16-bit grayscale:
    label id * 1000 + k for a thing instance, ``k`` counting that label's instances in the image
    from 0 in segment-id order; the label id for any other pixel), the encoding of
    ``json2instanceImg.py`` / ``json2labelImg.py``. ``OUTDIR/labelIds`` is what cityscapesScripts'
    ``evalPixelLevelSemanticLabeling`` takes as predictions (``--predictionPath``: it wants one PNG
    per image below it, and stops with "Found multiple predictions" on a folder holding both kinds)
    or as ground truth (``CITYSCAPES_DATASET``); ``OUTDIR/instanceIds`` is what
    ``createPanopticImgs`` converts (``--dataset-folder OUTDIR/instanceIds/gtFine``).
``cityscapes-panoptic``
    Cityscapes' panoptic format, ``OUTDIR/cityscapes_panoptic_<split>.json`` and
    ``OUTDIR/cityscapes_panoptic_<split>/<name>_gtFine_panoptic.png``, made by cityscapesscripts'
    own conversion: ``export()`` writes the image's instanceIds PNG (as above) to
    ``OUTDIR/.ovpanoptic/cityscapes-panoptic.parts/``; ``finish(outdir, stems)`` lays the parts of
    ``stems`` out as ``gtFine/<split>/<city>/`` in a staging folder, runs
    ``createPanopticImgs.convert2panoptic`` on it and moves its JSON and PNGs into ``OUTDIR`` (each
    write atomic; the JSON last). The output *is* what their conversion makes of the gtFine export:
    image ids are the names, images in path order, segment ids the instanceIds values, groups of a
    thing label ``iscrowd`` 1, labels with ``ignoreInEval`` left void, and the image ``file_name``
    ``<name>_gtFine_leftImg8bit.png`` (their naming).

Names: the output name of an image is its stem without Cityscapes' ``_leftImg8bit`` suffix
(``frankfurt_000000_000294_leftImg8bit.png`` -> ``frankfurt_000000_000294``), so the files pair
with Cityscapes' own. ``<city>``: the name's first part when the name looks like Cityscapes'
``<city>_<6 digits>_<6 digits>``, else the ``city`` option (default ``ovpanoptic``); ``<split>``:
the ``split`` option (default ``val``). (Two inputs ``a_leftImg8bit.png`` and ``a.png`` would share
the name ``a``: keep Cityscapes images apart from others of the same names.)

Classes to Cityscapes labels, per vocabulary category, first rule that applies:

1. ``label_ids``: a table ``class name -> Cityscapes label id`` (or label name), matched against
   the category's name and synonyms ignoring case: ``label_ids = {lorry = 27, "tree canopy" =
   "vegetation"}``. Every id and name is checked against cityscapesscripts' labels (``-1``,
   ``license plate``, has no pixel value and is refused).
2. the category's name, else its first synonym, that is a Cityscapes label name (cityscapesscripts'
   ``name2label``, ignoring case): ``car`` -> 26, ``Motorbike|motorcycle`` -> 32.
3. otherwise ``unmapped = "error"`` (default) refuses the vocabulary before any image is written
   (``check_output``, and again in ``export()``), naming every such class and the fix;
   ``unmapped = "void"`` writes their pixels as ``unlabeled`` (0).

Things and stuff follow the *Cityscapes label*, as ``json2instanceImg.py`` does: a thing class
mapped to a label without instances (COCO's ``traffic light`` -> 19) writes the label id, so its
instances merge; a stuff class mapped to a label with instances (a stuff ``person``) writes the
bare label id, which Cityscapes reads as a group (``persongroup``) and the panoptic conversion as a
crowd region (``iscrowd`` 1). Several classes may map to one label (their instances are numbered
together). An image with more than 1000 instances of one label is refused (``k`` has three digits).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...atomic import atomic_write_bytes
from ...components import ComponentContext
from ...errors import ConfigError, ExportError, require
from ...types import PanopticResult, Vocabulary, normalize_name
from ..common import png_bytes
from ..parts import PARTS_FOLDER, check_plain_name
from .reader import (
    CITYSCAPES_INSTANCE_DIVISOR,
    CITYSCAPES_INSTANCE_IDS_SUFFIX,
    CITYSCAPES_LABEL_IDS_SUFFIX,
    CITYSCAPES_UNLABELED_ID,
    cityscapes_labels,
)

__all__ = [
    "CityscapesConfig",
    "CityscapesExporter",
    "CityscapesPanopticExporter",
    "city_of",
    "cityscapes_name",
    "INSTANCE_IDS_FOLDER",
    "LABEL_IDS_FOLDER",
    "LEFT_IMAGE_SUFFIX",
    "encode_instance_ids",
    "label_ids_image",
    "label_ids_of",
]

log = logging.getLogger(__name__)

#: Suffix of Cityscapes' camera images, removed from a stem to get the image's Cityscapes name.
LEFT_IMAGE_SUFFIX = "_leftImg8bit"

#: A Cityscapes image name: ``<city>_<sequence>_<frame>`` (``frankfurt_000000_000294``).
_CITYSCAPES_NAME = re.compile(r"([a-z][a-z-]*)_\d{6}_\d{6}")

#: Folders of the ``cityscapes`` export, one per kind of file (each holds ``gtFine/<split>/<city>/``).
LABEL_IDS_FOLDER = "labelIds"
INSTANCE_IDS_FOLDER = "instanceIds"

#: Folder of the ``cityscapes-panoptic`` parts (instanceIds PNGs) and its staging folder, in ``OUTDIR/.ovpanoptic``.
_PANOPTIC_PARTS = "cityscapes-panoptic.parts"
_PANOPTIC_STAGING = "cityscapes-panoptic.staging"

_INSTALL = "pip install cityscapesscripts (or pip install 'ovpanoptic[labelling]')"


def cityscapes_name(stem: str) -> str:
    """The Cityscapes name of an output stem: without ``_leftImg8bit``
    (``frankfurt_000000_000294_leftImg8bit`` -> ``frankfurt_000000_000294``)."""
    if stem.endswith(LEFT_IMAGE_SUFFIX) and len(stem) > len(LEFT_IMAGE_SUFFIX):
        return stem[: -len(LEFT_IMAGE_SUFFIX)]
    return stem


def city_of(name: str, default: str) -> str:
    """The city folder of an image: the name's first part when it looks like Cityscapes'
    ``<city>_<6 digits>_<6 digits>``, else ``default``."""
    match = _CITYSCAPES_NAME.fullmatch(name)
    return match.group(1) if match else default


@dataclass(frozen=True)
class CityscapesConfig:
    """Options of the ``cityscapes`` and ``cityscapes-panoptic`` exporters.

    :param split: the split folder (``gtFine/<split>/``) and the panoptic set name
        (``cityscapes_panoptic_<split>.json``).
    :param city: the city folder of images whose names are not Cityscapes' ``<city>_<seq>_<frame>``.
    :param label_ids: ``{class name: Cityscapes label id or label name}`` for classes whose names
        are no Cityscapes label (see the module docstring); names compare ignoring case.
    :param unmapped: ``"error"``: refuse a vocabulary with classes no rule maps; ``"void"``: write
        them as ``unlabeled`` (0).
    """

    split: str = "val"
    city: str = "ovpanoptic"
    label_ids: Mapping[str, int | str] = field(default_factory=dict)
    unmapped: Literal["error", "void"] = "error"

    def __post_init__(self) -> None:
        check_plain_name("split", self.split)
        check_plain_name("city", self.city)
        if not isinstance(self.label_ids, Mapping):
            raise TypeError(
                f"label_ids must be a table of class name = Cityscapes label id, e.g. {{lorry = 27}}; got {self.label_ids!r}"
            )
        for key, value in self.label_ids.items():
            if not isinstance(key, str) or not key.strip():
                raise TypeError(f"label_ids: the class name {key!r} must be a non-empty string")
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise TypeError(
                    f"label_ids: {key!r} = {value!r} must be a Cityscapes label id (an integer) or label name"
                )
        object.__setattr__(self, "label_ids", dict(self.label_ids))
        if self.unmapped not in ("error", "void"):
            raise ValueError(f"unmapped must be 'error' or 'void', got {self.unmapped!r}")


def _key(name: str) -> str:
    return normalize_name(name).casefold()


def _resolve_label_ids(label_ids: Mapping[str, int | str], labels: Sequence[Any], where: str) -> dict[str, int]:
    """``{name key: label id}`` of the ``label_ids`` option, each value checked against the labels.

    :raises ConfigError: a value that is no Cityscapes label id or name (the message lists them).
    """
    by_id = {int(l.id): l for l in labels if int(l.id) >= 0}
    by_name = {_key(l.name): l for l in labels if int(l.id) >= 0}
    out: dict[str, int] = {}
    for name, value in label_ids.items():
        label = by_name.get(_key(value)) if isinstance(value, str) else by_id.get(value)
        if label is None:
            valid = ", ".join(f"{l.id} {l.name}" for l in by_id.values())
            raise ConfigError(
                f"[{where}] label_ids: {name!r} = {value!r} is not a Cityscapes label; use a label id or name of "
                f"cityscapesscripts' labels.py: {valid}"
            )
        out[_key(name)] = int(label.id)
    return out


def label_ids_of(
    vocabulary: Vocabulary, labels: Sequence[Any], label_ids: Mapping[str, int], unmapped: str, exporter: str
) -> dict[int, int]:
    """The Cityscapes label id of every category of ``vocabulary`` (rules: module docstring).

    :param labels: cityscapesscripts' label table (:func:`~.reader.cityscapes_labels`).
    :param label_ids: the resolved ``label_ids`` option, keys as compared (:func:`_resolve_label_ids`).
    :param exporter: the exporter's name, for the message.
    :return: ``{category id: label id}``; ``unlabeled`` (0) for unmapped classes when ``unmapped`` is ``"void"``.
    :raises ExportError: ``unmapped`` is ``"error"`` and some classes map to no label (all named).
    """
    by_name = {_key(l.name): int(l.id) for l in labels if int(l.id) >= 0}
    out: dict[int, int] = {}
    missing: list[str] = []
    for category in vocabulary.categories:
        keys = [_key(n) for n in category.names]
        chosen = next((label_ids[k] for k in keys if k in label_ids), None)
        if chosen is None:
            chosen = next((by_name[k] for k in keys if k in by_name), None)
        if chosen is None:
            missing.append(category.name)
            chosen = CITYSCAPES_UNLABELED_ID
        out[category.id] = chosen
    if missing and unmapped == "error":
        shown = ", ".join(repr(n) for n in missing)
        example = f'{{"{missing[0]}" = ID}}'
        raise ExportError(
            f"the {exporter} exporter cannot write {len(missing)} class(es) of vocabulary {vocabulary.name!r}, whose "
            f"names are no Cityscapes label: {shown}. Give each a Cityscapes label id or name: [exporter.{exporter}] "
            f"label_ids = {example} (or --set 'exporter.{exporter}.label_ids={example}'), or write them as unlabeled "
            f'(0) with unmapped = "void"'
        )
    return out


def encode_instance_ids(
    result: PanopticResult, label_of: Mapping[int, int], labels: Sequence[Any], stem: str = ""
) -> np.ndarray:
    """Cityscapes' instanceIds of a result (the encoding of cityscapesscripts' ``json2instanceImg.py``).

    :param label_of: ``{category id: Cityscapes label id}`` (:func:`label_ids_of`).
    :param labels: cityscapesscripts' label table (for ``hasInstances``).
    :return: ``(H, W)`` uint16: ``label * 1000 + k`` for a thing segment mapped to a label with
        instances (``k`` = 0, 1, ... per label, in segment-id order), the label id for the other
        segments, 0 (``unlabeled``) for void.
    :raises ExportError: 1000 or more instances of one label in the image.
    """
    has_instances = {int(l.id): bool(l.hasInstances) for l in labels}
    names = {int(l.id): l.name for l in labels}
    value_of = np.zeros(int(result.panoptic_map.max(initial=0)) + 1, np.uint16)
    count: dict[int, int] = {}
    for segment in result.segments:  # sorted by id
        label = label_of[segment.category_id]
        if segment.isthing and has_instances.get(label, False):
            k = count.get(label, 0)
            if k >= CITYSCAPES_INSTANCE_DIVISOR:
                raise ExportError(
                    f"{stem or 'the image'}: more than {CITYSCAPES_INSTANCE_DIVISOR} instances of the Cityscapes label "
                    f"{names[label]!r}; Cityscapes' instanceIds number at most {CITYSCAPES_INSTANCE_DIVISOR} per label "
                    "(label id * 1000 + k): raise the fuser's thresholds to keep fewer segments"
                )
            count[label] = k + 1
            value_of[segment.id] = label * CITYSCAPES_INSTANCE_DIVISOR + k
        else:
            value_of[segment.id] = label
    return value_of[result.panoptic_map]


def label_ids_image(instance_ids: np.ndarray) -> np.ndarray:
    """Cityscapes' labelIds from its instanceIds: ``(H, W)`` uint8 label ids (instance // 1000)."""
    ids = np.asarray(instance_ids)
    return np.where(ids >= CITYSCAPES_INSTANCE_DIVISOR, ids // CITYSCAPES_INSTANCE_DIVISOR, ids).astype(np.uint8)


class _CityscapesBase:
    """What both exporters share: cityscapesscripts' labels and the vocabulary-to-label mapping."""

    name = "cityscapes"

    def __init__(self, config: CityscapesConfig, context: ComponentContext | None = None) -> None:
        require("cityscapesscripts", f"the {self.name} exporter", _INSTALL)
        self.config = config
        self._labels = cityscapes_labels(f"the {self.name} exporter")
        self._label_ids = _resolve_label_ids(config.label_ids, self._labels, f"exporter.{self.name}")
        self._warned: set[str] = set()

    def check_output(self, outdir: Path, vocabulary: Vocabulary) -> None:
        """Refuse a vocabulary with classes that map to no Cityscapes label (``unmapped = "error"``)."""
        self.label_map(vocabulary)

    def label_map(self, vocabulary: Vocabulary) -> dict[int, int]:
        """``{category id: Cityscapes label id}`` of ``vocabulary`` (see :func:`label_ids_of`)."""
        mapping = label_ids_of(vocabulary, self._labels, self._label_ids, self.config.unmapped, self.name)
        known = {_key(n) for c in vocabulary.categories for n in c.names}
        unused = [n for n in self.config.label_ids if _key(n) not in known and n not in self._warned]
        if unused:
            self._warned.update(unused)
            log.warning(
                "%s: label_ids names %s, which no class of vocabulary %r has: ignored",
                self.name,
                ", ".join(repr(n) for n in unused),
                vocabulary.name,
            )
        return mapping

    def instance_ids(self, result: PanopticResult, stem: str) -> np.ndarray:
        """The result's Cityscapes instanceIds, ``(H, W)`` uint16 (:func:`encode_instance_ids`)."""
        return encode_instance_ids(result, self.label_map(result.vocabulary), self._labels, stem)


class CityscapesExporter(_CityscapesBase):
    """Cityscapes gtFine ``_labelIds.png`` and ``_instanceIds.png`` per image (module docstring)."""

    name = "cityscapes"

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        instance_ids = self.instance_ids(result, stem)
        name = cityscapes_name(stem)
        below = Path("gtFine") / self.config.split / city_of(name, self.config.city)
        written = []
        for kind, suffix, ids in (
            (LABEL_IDS_FOLDER, CITYSCAPES_LABEL_IDS_SUFFIX, label_ids_image(instance_ids)),
            (INSTANCE_IDS_FOLDER, CITYSCAPES_INSTANCE_IDS_SUFFIX, instance_ids),
        ):
            folder = Path(outdir) / kind / below
            folder.mkdir(parents=True, exist_ok=True)
            written.append(atomic_write_bytes(folder / f"{name}{suffix}", png_bytes(ids)))
        return written


class CityscapesPanopticExporter(_CityscapesBase):
    """Cityscapes-panoptic JSON + PNGs, made by cityscapesscripts' ``convert2panoptic`` in :meth:`finish`."""

    name = "cityscapes-panoptic"

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> list[Path]:
        instance_ids = self.instance_ids(result, stem)
        parts = Path(outdir) / PARTS_FOLDER / _PANOPTIC_PARTS
        parts.mkdir(parents=True, exist_ok=True)
        part = parts / f"{cityscapes_name(stem)}{CITYSCAPES_INSTANCE_IDS_SUFFIX}"
        return [atomic_write_bytes(part, png_bytes(instance_ids))]

    def finish(self, outdir: Path, stems: Sequence[str] | None = None) -> list[Path]:
        """Run cityscapesscripts' ``convert2panoptic`` on the parts of ``stems`` (``None``: every
        part in the folder) and move its ``cityscapes_panoptic_<split>.json`` and PNGs into ``outdir``.

        :return: the PNGs, then the JSON; nothing when there is no part.
        :raises ExportError: a part of ``stems`` is missing, or the conversion failed.
        """
        outdir = Path(outdir)
        parts = outdir / PARTS_FOLDER / _PANOPTIC_PARTS
        if stems is None:
            found = sorted(parts.glob(f"*{CITYSCAPES_INSTANCE_IDS_SUFFIX}")) if parts.is_dir() else []
            names = [p.name[: -len(CITYSCAPES_INSTANCE_IDS_SUFFIX)] for p in found]
        else:
            names = list(dict.fromkeys(cityscapes_name(s) for s in stems))
        if not names:
            return []
        staging = outdir / PARTS_FOLDER / _PANOPTIC_STAGING
        shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
        try:
            for name in names:
                part = parts / f"{name}{CITYSCAPES_INSTANCE_IDS_SUFFIX}"
                if not part.is_file():
                    raise ExportError(f"{part} is missing: run the batch again to redo image {name!r}")
                folder = staging / "gtFine" / self.config.split / city_of(name, self.config.city)
                folder.mkdir(parents=True, exist_ok=True)
                _link_or_copy(part, folder / part.name)
            converted = staging / "panoptic"
            converted.mkdir()
            self._convert(staging / "gtFine", converted)
            base = f"cityscapes_panoptic_{self.config.split}"
            png_dir = outdir / base
            png_dir.mkdir(exist_ok=True)
            pngs = sorted((converted / base).glob("*.png"))
            written = [atomic_write_bytes(png_dir / p.name, p.read_bytes()) for p in pngs]
            written.append(atomic_write_bytes(outdir / f"{base}.json", (converted / f"{base}.json").read_bytes()))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return written

    def _convert(self, gtfine: Path, out: Path) -> None:
        """``convert2panoptic(gtfine, out, useTrainId=False, setNames=[split])``, its prints logged at debug."""
        from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                convert2panoptic(str(gtfine), str(out), False, [self.config.split])
        except SystemExit:  # their printError() exits
            raise ExportError(
                f"cityscapesscripts' convert2panoptic failed on {gtfine}: {printed.getvalue().strip()[-300:]}"
            ) from None
        finally:
            log.debug("convert2panoptic: %s", printed.getvalue())


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows one, else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)

