"""Built-in plugin: oracle components that read COCO-panoptic ground truth.

``oracle`` (proposal generator) proposes exactly the ground-truth segments of the image; ``oracle``
(classifier) gives each proposal the category of the ground-truth segment it overlaps most. With a
fuser and an exporter they run the real rest of the pipeline on ground truth, which must then
evaluate to PQ = 100: a check of fusers, exporters and the evaluator, and an upper bound for
experiments. The image is recognised by its pixels (it must be one of ``images_dir``'s images,
unresized: use ``--set pipeline.max_side=0``).

Config (both components)::

    [proposal_generator.oracle]
    gt_json = "panoptic.json"
    gt_dir = "panoptic"
    images_dir = "images"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..components import ComponentContext, Progress, RegisterComponent
from ..errors import InputError
from ..hookspecs import hookimpl
from ..imageio import image_digest, read_image
from ..types import ClassScores, ProposalSet, Vocabulary


@dataclass(frozen=True)
class OracleConfig:
    """Where the ground truth is.

    :param gt_json: COCO-panoptic JSON (``images``, ``annotations``).
    :param gt_dir: folder of the ground-truth PNGs.
    :param images_dir: folder of the images named in ``gt_json``.
    """

    gt_json: str = ""
    gt_dir: str = ""
    images_dir: str = ""

    def __post_init__(self) -> None:
        missing = [k for k in ("gt_json", "gt_dir", "images_dir") if not getattr(self, k)]
        if missing:
            raise ValueError(f"the oracle needs {', '.join(missing)} (paths of the COCO-panoptic ground truth)")


class GroundTruthIndex:
    """Ground-truth id maps and segments, looked up by image content."""

    def __init__(self, config: OracleConfig) -> None:
        self.config = config
        self._by_digest: dict[str, dict[str, Any]] | None = None

    def _build(self) -> dict[str, dict[str, Any]]:
        from ..formats import rgb_to_id
        from PIL import Image

        gt_json = Path(self.config.gt_json)
        try:
            data = json.loads(gt_json.read_text("utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"oracle: cannot read ground truth {gt_json}: {exc}") from None
        annotations = {a["image_id"]: a for a in data.get("annotations", [])}
        index: dict[str, dict[str, Any]] = {}
        for img in data.get("images", []):
            ann = annotations.get(img["id"])
            if ann is None:
                continue
            image = read_image(Path(self.config.images_dir) / img["file_name"])
            with Image.open(Path(self.config.gt_dir) / ann["file_name"]) as png:
                ids = rgb_to_id(np.asarray(png.convert("RGB")))
            index[image_digest(image)] = {"ids": ids, "segments": ann["segments_info"], "file_name": img["file_name"]}
        return index

    def lookup(self, image: np.ndarray) -> dict[str, Any]:
        """The ground truth of ``image``; :class:`InputError` when the image is not in it."""
        if self._by_digest is None:
            self._by_digest = self._build()
        entry = self._by_digest.get(image_digest(image))
        if entry is None:
            raise InputError(
                f"oracle: this image ({image.shape[1]}x{image.shape[0]}) is not one of the ground-truth images in "
                f"{self.config.images_dir}; the oracle needs them unresized (--set pipeline.max_side=0)"
            )
        return entry


class OracleProposals:
    """Proposes the ground-truth segments (score 1)."""

    def __init__(self, config: OracleConfig, context: ComponentContext | None = None) -> None:
        self.index = GroundTruthIndex(config)

    def generate(self, image: np.ndarray, *, progress: Progress | None = None) -> ProposalSet:
        gt = self.index.lookup(image)
        ids = gt["ids"]
        masks = np.stack([ids == s["id"] for s in gt["segments"]]) if gt["segments"] else np.zeros((0, *ids.shape), bool)
        return ProposalSet.from_masks(masks)


#: Bins per RGB channel of the oracle's appearance features (:func:`colour_features`).
COLOUR_BINS = 4


def colour_features(image: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``(N, COLOUR_BINS ** 3)`` float32 appearance features of ``masks`` on ``image``: the square
    root of each mask's normalised RGB histogram, L2-normalised (so the cosine similarity of two
    segments is the Bhattacharyya coefficient of their colour distributions; 1 for the same colours,
    0 for disjoint ones); a zero row for an empty mask. The oracle's stand-in for a classifier's
    image features (no model)."""
    bins = (np.asarray(image, np.uint16) * COLOUR_BINS // 256).astype(np.int64)
    code = (bins[..., 0] * COLOUR_BINS + bins[..., 1]) * COLOUR_BINS + bins[..., 2]
    out = np.zeros((len(masks), COLOUR_BINS**3), np.float32)
    for i, mask in enumerate(masks):
        hist = np.bincount(code[mask], minlength=COLOUR_BINS**3).astype(np.float64)
        if hist.sum() > 0:
            out[i] = np.sqrt(hist / hist.sum())  # unit L2 norm already: sum of the squares is 1
    return out


@dataclass(frozen=True, eq=False)
class OracleFeatures:
    """What :meth:`OracleClassifier.prepare` computes: each proposal's ground-truth category id
    (0: none) and its appearance features (:func:`colour_features`)."""

    categories: np.ndarray
    embeddings: np.ndarray

    def __len__(self) -> int:
        return len(self.categories)


class OracleClassifier:
    """Gives each proposal the category of the ground-truth segment it overlaps most (probability 1),
    and colour-histogram appearance features as its ``embeddings`` (:func:`colour_features`)."""

    def __init__(self, config: OracleConfig, context: ComponentContext | None = None) -> None:
        self.index = GroundTruthIndex(config)

    def prepare(self, image: np.ndarray, proposals: ProposalSet) -> OracleFeatures:
        gt = self.index.lookup(image)
        ids = gt["ids"]
        category = {s["id"]: s["category_id"] for s in gt["segments"]}
        out = np.zeros(len(proposals), np.int64)
        for i, mask in enumerate(proposals.masks):
            values, counts = np.unique(ids[mask], return_counts=True)
            known = [(c, v) for v, c in zip(values.tolist(), counts.tolist()) if v in category]
            if known:
                out[i] = category[max(known)[1]]
        return OracleFeatures(out, colour_features(image, np.asarray(proposals.masks)))

    def score(self, prepared: OracleFeatures, vocabulary: Vocabulary) -> ClassScores:
        column = {cid: j for j, cid in enumerate(vocabulary.ids)}
        probs = np.zeros((len(prepared), len(vocabulary)), np.float32)
        for i, cid in enumerate(prepared.categories.tolist()):
            if cid in column:
                probs[i, column[cid]] = 1.0
        return ClassScores(logits=probs.copy(), probs=probs, category_ids=vocabulary.ids, embeddings=prepared.embeddings)


@hookimpl
def register_proposal_generators(register: RegisterComponent) -> None:
    register("oracle", OracleProposals, config=OracleConfig, description="ground-truth segments (evaluation, tests)")


@hookimpl
def register_classifiers(register: RegisterComponent) -> None:
    register("oracle", OracleClassifier, config=OracleConfig, description="ground-truth categories (evaluation, tests)")
