"""File formats that tools speak: one module (or small package) per format, each holding its writer,
its reader into the one internal annotation type, and its detection rule, side by side.

The map (exporter = ``ovpanoptic segment --format NAME``; gt format = ``eval --gt-format/--pred-format``
and ``qa``/``package --format``; round trip = the tool library ``tests/formats/`` reads our files with;
a dotted name such as ``push.push_label_studio`` lives in that submodule, every other name is in the
module's ``__all__``):

=====================  ==========================================  =========================================  ===================  ========================
module                 writer (exporter)                           reader                                     detection            round trip with
=====================  ==========================================  =========================================  ===================  ========================
:mod:`.coco_panoptic`  ``CocoPanopticExporter`` (``coco-panoptic``) ``read_coco_panoptic`` (``coco-panoptic``)  ``detect``           pycocotools' JSON + Pillow PNGs
                       packaging: ``coco_categories``,
                       ``panoptic_png``, ``panoptic_segments``
:mod:`.coco_instances` ``CocoInstancesExporter``                   ``read_coco_instances`` (Python only: not  ``detect`` (eval      pycocotools ``COCO``,
                       (``coco-instances``); packaging:            an eval format)                            refuses it, naming   ``mask.decode``
                       ``instance_annotations``                                                               the coco-panoptic
                                                                                                              export)
:mod:`.label_studio`   ``LabelStudioExporter`` (``label-studio``), ``read_label_studio`` (``label-studio``),   ``detect``           label-studio-sdk's brush
                       ``labelling_config``, ``local_files_url``;  ``embedded_categories``,                                        ``decode_rle``
                       ``push.push_label_studio`` (``ovpanoptic    ``parse_labelling_config``,
                       push label-studio``)                        ``local_files_path``
:mod:`.cvat`           ``CvatExporter`` (``cvat``)                 ``read_cvat`` (``cvat``), ``check_cvat``,  ``detect``           Datumaro's ``cvat`` importer
                                                                   ``cvat_file``
:mod:`.cityscapes`     ``CityscapesExporter`` (``cityscapes``),    ``read_cityscapes`` (``cityscapes``),      ``detect``,          cityscapesScripts
                       ``CityscapesPanopticExporter``              ``read_cityscapes_panoptic``               ``detect_panoptic``  (labels, ``convert2panoptic``)
                       (``cityscapes-panoptic``)                   (``cityscapes-panoptic``)
:mod:`.video_panoptic` (the video pipeline's output)               ``read_video_panoptic`` (``eval-video``)   none                 (own JSON)
:mod:`.yolo`           ``yolo_labels``, ``data_yaml`` (package)     none (lossy: holes filled)                 none                 OpenCV ``fillPoly``
:mod:`.semantic`       ``semantic_map``, ``semantic_png`` (package) none (no instances)                        none                 Pillow
:mod:`.hf`             ``ParquetSplitWriter`` (package)             none                                       none                 ``datasets``
=====================  ==========================================  =========================================  ===================  ========================

Shared modules:

* :mod:`.annotations`: the internal type, :class:`PanopticAnnotations` of :class:`AnnotatedImage`
  (read lazily), :func:`image_name` (how images pair), :func:`paint_segments` (shapes to an id map);
* :mod:`.common`: :class:`CategoryInfo`, the COCO id <-> RGB rule (:func:`rgb_to_id`,
  :func:`id_to_rgb`), the one place annotation files are opened and parsed (:func:`~.common.read_json_file`,
  :func:`~.common.xml_root`: a plain message naming the side, the file and the fix), checked PNG readers,
  the pixel limit, name keys, :func:`png_bytes`;
* :mod:`.parts`: the resumable exports' per-image parts and category tables (``OUTDIR/.ovpanoptic/``);
* :mod:`.probe`: what a detection rule looks at;
* :mod:`.detect`: :func:`detect_format` (asks each format's rule), :func:`~.detect.refuse_foreign`
  (a known file that is no eval format: what it is and what to pass), :func:`read_annotations` (the one
  read entry point), :func:`own_categories`, :data:`NAME_ONLY_FORMATS`, :func:`cvat_file`.

The exporters are registered by :mod:`ovpanoptic.builtins` (thin registrations of the writers here);
:mod:`ovpanoptic.evaluation` reads through :func:`read_annotations`; :mod:`ovpanoptic.serve` speaks
Label Studio through :mod:`.label_studio`; :mod:`ovpanoptic.packaging` writes the training formats.

Imports: the core leaf modules (:mod:`ovpanoptic.constants`, :mod:`ovpanoptic.errors`,
:mod:`ovpanoptic.types`, :mod:`ovpanoptic.atomic`, :mod:`ovpanoptic.components`), numpy and Pillow;
a format's own library (pycocotools, label-studio-sdk, Datumaro, cityscapesscripts, OpenCV,
pyarrow) only lazily, inside the function that needs it. Never :mod:`ovpanoptic.evaluation`,
:mod:`ovpanoptic.serve`, :mod:`ovpanoptic.builtins`, the CLI, the pipeline, the engines or the demo.
Inside, modules import downwards: ``common``, ``parts``, ``probe`` <- ``annotations`` <- the format
modules <- ``detect``.
"""

from __future__ import annotations

from .annotations import AnnotatedImage, PanopticAnnotations, categories_by_name, image_name, paint_segments
from .common import CategoryInfo, EvaluationError, id_to_rgb, rgb_to_id
from .detect import NAME_ONLY_FORMATS, cvat_file, detect_format, own_categories, read_annotations

__all__ = [
    "NAME_ONLY_FORMATS",
    "AnnotatedImage",
    "CategoryInfo",
    "EvaluationError",
    "PanopticAnnotations",
    "categories_by_name",
    "cvat_file",
    "detect_format",
    "id_to_rgb",
    "image_name",
    "own_categories",
    "paint_segments",
    "read_annotations",
    "rgb_to_id",
]
