"""Evaluation of panoptic segmentations against ground truth: the metrics and the QA report.

* :mod:`.pq`: Panoptic Quality (PQ) with the exact rules of the COCO panoptic API
  (:func:`evaluate_panoptic`, :class:`PQAccumulator`);
* :mod:`.categories`: how two sets' categories pair (by id or by name);
* :mod:`.agreement`: :func:`evaluate_annotations`, the per-class and per-image agreement report of
  two annotation sets (labelling QA);
* :mod:`.iou`, :mod:`.ap`: per-class IoU and confusion, mask AP through pycocotools;
* :mod:`.qa`, :mod:`.report`, :mod:`.targets`: ``ovpanoptic qa`` and its HTML report;
* :mod:`.datasets`: where a panoptic dataset's images and ground truth are (``ovpanoptic evaluate``);
* :mod:`.consistency`: temporal consistency of tracks (mask IoU between consecutive frames), a
  quality check that needs no ground truth;
* :mod:`.video`: the video metrics VPQ (Kim et al., CVPR 2020) and STQ (Weber et al., 2021) and
  :func:`evaluate_video`.

Annotations are read through :mod:`ovpanoptic.formats` (the readers, the internal
:class:`PanopticAnnotations`, :func:`read_annotations`); their public names are re-exported here
for existing callers (``from ovpanoptic.evaluation import read_cvat``), and
:exc:`EvaluationError` (defined in :mod:`ovpanoptic.errors`) too.

The package may import numpy, Pillow, :mod:`ovpanoptic.formats` and the core leaf modules
(:mod:`ovpanoptic.constants`, :mod:`ovpanoptic.errors`); never the pipeline, the CLI,
:mod:`ovpanoptic.builtins` or a model library (torch, open_clip, SAM 2); pycocotools only lazily.
Its modules import one another only downwards: ``categories`` <- ``pq`` <- ``agreement`` <- ``qa``
<- ``report``; ``pq`` <- ``consistency`` <- ``video``.
"""

from __future__ import annotations

from ..errors import EvaluationError
from ..formats.annotations import AnnotatedImage, PanopticAnnotations, image_name
from ..formats.cityscapes import (
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
from ..formats.coco_panoptic import read_coco_panoptic
from ..formats.common import CategoryInfo, id_to_rgb, rgb_to_id
from ..formats.cvat import read_cvat
from ..formats.video_panoptic import VideoFrame, VideoFrameRecord, VideoId, VideoPanoptic, read_video_panoptic
from .agreement import AgreementReport, ImageAgreement, evaluate_annotations
from .pq import ID_BASE, VOID_ID, PQAccumulator, PQReport, PQStats, evaluate_panoptic
from .video import (
    DEFAULT_SPANS,
    ClassChange,
    ConsistencyIssue,
    ConsistencyReport,
    STQReport,
    STQStats,
    TrackConsistency,
    VideoReport,
    VPQReport,
    check_temporal_consistency,
    evaluate_video,
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
