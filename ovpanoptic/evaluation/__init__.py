"""Evaluation of panoptic segmentations against ground truth.

* :mod:`.pq`: Panoptic Quality (PQ) with the exact rules of the COCO panoptic API, the COCO id
  encoding (:func:`rgb_to_id`, :func:`id_to_rgb`) and the COCO panoptic file readers;
* :mod:`.annotations`: the one internal form of panoptic annotations (:class:`PanopticAnnotations`)
  that the readers of foreign formats produce, and :func:`evaluate_annotations`, the per-class and
  per-image agreement report of two sets (labelling QA);
* :mod:`.cvat_reader`: :func:`read_cvat`, a "CVAT for images 1.1" export (through Datumaro, an
  optional dependency) as :class:`PanopticAnnotations`;
* :mod:`.cityscapes_reader`: Cityscapes ground truth (gtFine ``instanceIds`` folders and
  Cityscapes-panoptic JSON + PNGs) as :class:`PanopticAnnotations`;
* :mod:`.video_reader`: the video panoptic format (COCO panoptic plus ``video_id`` and
  ``frame_index`` per image), read frame by frame;
* :mod:`.consistency`: temporal consistency of tracks (mask IoU between consecutive frames), a
  quality check that needs no ground truth;
* :mod:`.video`: the video metrics VPQ (Kim et al., CVPR 2020) and STQ (Weber et al., 2021) and
  :func:`evaluate_video`.

Every public name is re-exported here (``from ovpanoptic.evaluation import evaluate_panoptic``).
The package may import numpy, Pillow and the core leaf modules (:mod:`ovpanoptic.constants`,
:mod:`ovpanoptic.errors`); never the pipeline, the CLI, :mod:`ovpanoptic.builtins` or a model
library (torch, open_clip, SAM 2); a format's own library (cityscapesscripts) only lazily, inside
the reader that needs it. Its modules import one another only downwards:
``pq`` <- ``annotations`` <- the format readers; ``pq`` <- ``video_reader`` <- ``consistency`` <- ``video``.
"""

from __future__ import annotations

from .annotations import (
    AgreementReport,
    AnnotatedImage,
    ImageAgreement,
    PanopticAnnotations,
    evaluate_annotations,
    image_name,
    read_coco_panoptic,
)
from .cityscapes_reader import (
    CITYSCAPES_INSTANCE_DIVISOR,
    CITYSCAPES_INSTANCE_IDS_SUFFIX,
    CITYSCAPES_LABEL_IDS_SUFFIX,
    CITYSCAPES_UNLABELED_ID,
    cityscapes_categories,
    cityscapes_labels,
    decode_instance_ids,
    read_cityscapes,
    read_cityscapes_panoptic,
)
from .cvat_reader import read_cvat
from .pq import (
    ID_BASE,
    VOID_ID,
    CategoryInfo,
    EvaluationError,
    PQAccumulator,
    PQReport,
    PQStats,
    evaluate_panoptic,
    id_to_rgb,
    rgb_to_id,
)
from .video import (
    DEFAULT_SPANS,
    ClassChange,
    ConsistencyIssue,
    ConsistencyReport,
    STQReport,
    STQStats,
    TrackConsistency,
    VideoFrame,
    VideoFrameRecord,
    VideoId,
    VideoPanoptic,
    VideoReport,
    VPQReport,
    check_temporal_consistency,
    evaluate_video,
    read_video_panoptic,
)

__all__ = [
    "CITYSCAPES_INSTANCE_DIVISOR",
    "CITYSCAPES_INSTANCE_IDS_SUFFIX",
    "CITYSCAPES_LABEL_IDS_SUFFIX",
    "CITYSCAPES_UNLABELED_ID",
    "DEFAULT_SPANS",
    "ID_BASE",
    "VOID_ID",
    "AgreementReport",
    "AnnotatedImage",
    "CategoryInfo",
    "ClassChange",
    "ConsistencyIssue",
    "ConsistencyReport",
    "EvaluationError",
    "ImageAgreement",
    "PQAccumulator",
    "PQReport",
    "PQStats",
    "PanopticAnnotations",
    "STQReport",
    "STQStats",
    "TrackConsistency",
    "VPQReport",
    "VideoFrame",
    "VideoFrameRecord",
    "VideoId",
    "VideoPanoptic",
    "VideoReport",
    "check_temporal_consistency",
    "cityscapes_categories",
    "cityscapes_labels",
    "decode_instance_ids",
    "evaluate_annotations",
    "evaluate_panoptic",
    "evaluate_video",
    "id_to_rgb",
    "image_name",
    "read_cityscapes",
    "read_cityscapes_panoptic",
    "read_coco_panoptic",
    "read_cvat",
    "read_video_panoptic",
    "rgb_to_id",
]
