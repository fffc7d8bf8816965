"""Built-in plugin: panoptic fusers.

Both fusers first give each proposal its best category (``argmax`` of the classifier's
probabilities) and a score (that probability, times the proposal's own score when
``use_proposal_score`` is on); proposals whose best probability is below ``min_class_prob`` match
no category and are dropped (their pixels stay void unless another proposal covers them).

``detectron2``
    Things become instances (masks, scores, classes) and stuff a semantic map (each pixel takes the
    stuff class of the highest-scoring stuff proposal covering it); they are merged by the rule of
    detectron2's ``combine_semantic_and_instance_outputs`` (the same answer, instances ordered by the
    same ``torch.argsort``, each pasted inside its box; on the pipeline's CUDA device when it has
    one; ``tests/test_fusion.py`` checks it against detectron2's function): things are pasted in
    descending score, an instance whose overlap with already pasted ones exceeds
    ``overlap_threshold`` of its area is dropped (otherwise only its free pixels are kept), then
    stuff fills the pixels still free, a stuff class covering fewer free pixels than
    ``stuff_area_thresh`` or than ``stuff_area_fraction`` of the image, whichever is smaller,
    being dropped (so the threshold shrinks with small images: a 60 x 50 image all sky keeps it).

``maskformer``
    Mask2Former's mask-classification rule: every pixel goes to the kept proposal with the highest
    ``score x mask probability`` (masks are binary here, so: the highest-scoring proposal covering
    it), things and stuff competing alike; a proposal keeps its segment only when at least
    ``overlap_threshold`` of its mask is still its own; all segments of one stuff class merge.

Where masks do not overlap, the two give the same segments *up to their score and size
thresholds*, which differ: ``detectron2`` drops things scoring below ``instances_score_thresh``
and stuff classes smaller than its area threshold, ``maskformer`` drops any proposal scoring at or
below ``object_mask_threshold`` (``tests/test_fusion.py`` checks that with those thresholds at 0
they agree exactly). Where masks overlap, ``detectron2`` lets every thing beat every stuff class
and drops stuff only by area, while ``maskformer`` lets scores decide between things and stuff and
drops any proposal left with less than ``overlap_threshold`` of its mask.

Cost (640x480, 2-core CPU, ``bench/bench_fusion.py``, ``bench/results/fusion.json``): ``detectron2``
0.01-0.02 s at 100 to 800 proposals (it pastes each instance inside its tight box; handing the same
inputs to detectron2's own function, which makes several full-image passes per instance, took
0.26-0.38 s at 100 and 1.5-5.1 s at 800), ``maskformer`` 0.02-0.06 s. Both paint stuff/proposals
inside each mask's tight box (:attr:`ProposalSet.windows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..components import ComponentContext, RegisterComponent
from ..constants import VOID_ID
from ..errors import MissingDependencyError
from ..hookspecs import hookimpl
from ..types import ClassScores, PanopticResult, ProposalSet, Vocabulary
from ._quiet import require


def _check_fraction(name: str, value: float) -> None:
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class Detectron2FuserConfig:
    """Options of the ``detectron2`` fuser (detectron2's ``COMBINE`` settings and the label rule).

    :param overlap_threshold: drop an instance when this fraction of it is already taken.
    :param stuff_area_thresh: drop a stuff class covering fewer free pixels than this...
    :param stuff_area_fraction: ...or than this fraction of the image, when that is fewer pixels
        (detectron2's 4096 px assume COCO-sized images; this keeps small images' stuff).
    :param instances_score_thresh: ignore instances scoring below this.
    :param min_class_prob: proposals whose best class probability is lower match nothing.
    :param use_proposal_score: multiply the class probability by the proposal's score.
    """

    overlap_threshold: float = 0.5
    stuff_area_thresh: int = 4096
    stuff_area_fraction: float = 0.01
    instances_score_thresh: float = 0.5
    min_class_prob: float = 0.3
    use_proposal_score: bool = False

    def __post_init__(self) -> None:
        _check_fraction("overlap_threshold", self.overlap_threshold)
        _check_fraction("instances_score_thresh", self.instances_score_thresh)
        _check_fraction("stuff_area_fraction", self.stuff_area_fraction)
        _check_fraction("min_class_prob", self.min_class_prob)
        if self.stuff_area_thresh < 0:
            raise ValueError(f"stuff_area_thresh must be >= 0, got {self.stuff_area_thresh}")


@dataclass(frozen=True)
class MaskFormerFuserConfig:
    """Options of the ``maskformer`` fuser (Mask2Former's panoptic inference settings).

    :param overlap_threshold: keep a proposal only if at least this fraction of its mask is its own.
    :param object_mask_threshold: ignore proposals scoring at or below this.
    :param min_class_prob: proposals whose best class probability is lower match nothing.
    :param use_proposal_score: multiply the class probability by the proposal's score.
    """

    overlap_threshold: float = 0.8
    object_mask_threshold: float = 0.5
    min_class_prob: float = 0.3
    use_proposal_score: bool = False

    def __post_init__(self) -> None:
        _check_fraction("overlap_threshold", self.overlap_threshold)
        _check_fraction("object_mask_threshold", self.object_mask_threshold)
        _check_fraction("min_class_prob", self.min_class_prob)


def label_proposals(
    proposals: ProposalSet, scores: ClassScores, min_class_prob: float, use_proposal_score: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of proposals that match a category, their category columns and their scores."""
    if len(proposals) != len(scores):
        raise ValueError(f"{len(proposals)} proposals but {len(scores)} rows of class scores")
    n = len(proposals)
    if n == 0 or scores.probs.shape[1] == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    cols = scores.probs.argmax(axis=1)
    best = scores.probs[np.arange(n), cols]
    score = best * proposals.scores if use_proposal_score else best.copy()
    keep = np.flatnonzero((best >= min_class_prob) & (proposals.areas > 0))
    return keep, cols[keep], np.clip(score[keep], 0.0, 1.0).astype(np.float32)


class Detectron2Fuser:
    """Panoptic fusion with the rule of detectron2's ``combine_semantic_and_instance_outputs``.

    The rule is detectron2's, step for step (and checked against detectron2's own function by
    ``tests/test_fusion.py``), but each instance is pasted inside its tight box instead of with
    several full-image passes, so the cost grows with the proposals' areas, not with their number
    times the image: on the CPU in numpy (no OpenMP barriers between the many small steps), on a
    CUDA device in torch when the pipeline runs there.
    """

    def __init__(self, config: Detectron2FuserConfig, context: ComponentContext | None = None) -> None:
        require("detectron2", "the detectron2 fuser", "run scripts/bootstrap.sh (it installs detectron2), or choose --set pipeline.fuser=maskformer")
        self.config = config
        self._context = context

    @property
    def device(self) -> str:
        """Where the combine step runs: the pipeline's device when it is CUDA, else ``"cpu"``."""
        device = self._context.device if self._context is not None else "cpu"
        return device if device.startswith("cuda") else "cpu"

    def fuse(self, proposals: ProposalSet, scores: ClassScores, vocabulary: Vocabulary) -> PanopticResult:
        try:
            import torch
        except ImportError as exc:
            raise MissingDependencyError(
                f"the detectron2 fuser needs torch and detectron2 ({exc}); run scripts/bootstrap.sh, or "
                "choose --set pipeline.fuser=maskformer"
            ) from None
        cfg = self.config
        h, w = proposals.image_size
        keep, cols, sc = label_proposals(proposals, scores, cfg.min_class_prob, cfg.use_proposal_score)
        cats = [vocabulary.categories[c] for c in cols]
        thing_idx = [i for i, c in enumerate(cats) if c.isthing]
        stuff_idx = [i for i, c in enumerate(cats) if not c.isthing]

        # Semantic map: 0 = "no stuff" (detectron2's reserved label); stuff class k -> k + 1.
        stuff_ids = sorted({cats[i].id for i in stuff_idx})
        stuff_label = {cid: k + 1 for k, cid in enumerate(stuff_ids)}
        semantic = np.zeros((h, w), np.int32)
        stuff_score: dict[int, float] = {}
        for i in sorted(stuff_idx, key=lambda i: (sc[i], -i)):  # ascending: the best proposal paints last
            window = proposals.windows[keep[i]]
            semantic[window][proposals.masks[keep[i]][window]] = stuff_label[cats[i].id]
            stuff_score[cats[i].id] = max(stuff_score.get(cats[i].id, 0.0), float(sc[i]))

        t_keep = keep[thing_idx]
        t_scores = sc[thing_idx].astype(np.float32)
        # detectron2 orders instances with torch.argsort(-scores), which is not stable: ties take
        # torch's order, so the same call decides it here.
        order = torch.argsort(-torch.from_numpy(t_scores)).numpy()
        combine = _combine_torch if self.device != "cpu" else _combine_numpy
        panoptic, things, stuff = combine(
            proposals,
            t_keep,
            t_scores,
            order,
            semantic,
            len(stuff_ids),
            overlap_threshold=cfg.overlap_threshold,
            stuff_area_thresh=min(cfg.stuff_area_thresh, math.ceil(cfg.stuff_area_fraction * h * w)),
            instances_score_thresh=cfg.instances_score_thresh,
            device=self.device,
        )
        labels: dict[int, tuple[int, float]] = {}
        for sid, t in things:
            labels[sid] = (cats[thing_idx[t]].id, float(t_scores[t]))
        for sid, label in stuff:
            cid = stuff_ids[label - 1]
            labels[sid] = (cid, stuff_score[cid])
        return PanopticResult.from_map(panoptic, labels, vocabulary)


_Combined = tuple[np.ndarray, list[tuple[int, int]], list[tuple[int, int]]]


def _combine_numpy(
    proposals: ProposalSet,
    t_keep: np.ndarray,
    t_scores: np.ndarray,
    order: np.ndarray,
    semantic: np.ndarray,
    n_stuff: int,
    *,
    overlap_threshold: float,
    stuff_area_thresh: int,
    instances_score_thresh: float,
    device: str,
) -> _Combined:
    """detectron2's combine rule, each instance inside its tight box (``device`` is unused: numpy on the CPU).

    :returns: the panoptic map (H, W) int32, ``[(segment id, thing index)]`` and
        ``[(segment id, semantic label)]``, in detectron2's id order.
    """
    panoptic = np.zeros(semantic.shape, np.int32)
    things: list[tuple[int, int]] = []
    sid = 0
    for t in order.tolist():
        score = float(t_scores[t])
        if score < instances_score_thresh:
            break
        p = int(t_keep[t])
        mask_area = int(proposals.areas[p])
        if mask_area == 0:
            continue
        window = proposals.windows[p]
        owned = panoptic[window]
        free = proposals.masks[p][window] & (owned == 0)
        intersect_area = mask_area - int(np.count_nonzero(free))
        if intersect_area * 1.0 / mask_area > overlap_threshold:
            continue
        sid += 1
        owned[free] = sid
        things.append((sid, t))
    stuff: list[tuple[int, int]] = []
    if n_stuff:
        present = np.bincount(semantic.ravel(), minlength=n_stuff + 1) > 0
        free_px = panoptic == 0
        free_labels = semantic[free_px]
        free_counts = np.bincount(free_labels, minlength=n_stuff + 1)
        lut = np.zeros(n_stuff + 1, np.int32)
        for label in range(1, n_stuff + 1):
            if not present[label] or free_counts[label] < stuff_area_thresh:
                continue
            sid += 1
            lut[label] = sid
            stuff.append((sid, label))
        panoptic[free_px] = lut[free_labels]
    return panoptic, things, stuff


def _combine_torch(
    proposals: ProposalSet,
    t_keep: np.ndarray,
    t_scores: np.ndarray,
    order: np.ndarray,
    semantic: np.ndarray,
    n_stuff: int,
    *,
    overlap_threshold: float,
    stuff_area_thresh: int,
    instances_score_thresh: float,
    device: str,
) -> _Combined:
    """:func:`_combine_numpy` in torch on ``device`` (the CUDA path; runs on any device)."""
    import torch

    h, w = semantic.shape
    # Only the instances that will be looked at travel to the device.
    live = [t for t in order.tolist() if float(t_scores[t]) >= instances_score_thresh]
    masks = torch.from_numpy(np.ascontiguousarray(proposals.masks[t_keep[live]])).reshape(len(live), h, w).to(device)
    panoptic = torch.zeros((h, w), dtype=torch.int32, device=device)
    things: list[tuple[int, int]] = []
    sid = 0
    for k, t in enumerate(live):
        p = int(t_keep[t])
        mask_area = int(proposals.areas[p])
        if mask_area == 0:
            continue
        window = proposals.windows[p]
        owned = panoptic[window]
        free = masks[k][window] & (owned == 0)
        intersect_area = mask_area - int(free.sum().item())
        if intersect_area * 1.0 / mask_area > overlap_threshold:
            continue
        sid += 1
        owned[free] = sid
        things.append((sid, t))
    stuff: list[tuple[int, int]] = []
    if n_stuff:
        sem = torch.from_numpy(semantic).to(device)
        present = torch.bincount(sem.reshape(-1), minlength=n_stuff + 1).cpu().numpy() > 0
        free_px = panoptic == 0
        free_labels = sem[free_px]
        free_counts = torch.bincount(free_labels, minlength=n_stuff + 1).cpu().numpy()
        lut = np.zeros(n_stuff + 1, np.int32)
        for label in range(1, n_stuff + 1):
            if not present[label] or free_counts[label] < stuff_area_thresh:
                continue
            sid += 1
            lut[label] = sid
            stuff.append((sid, label))
        panoptic[free_px] = torch.from_numpy(lut).to(device)[free_labels.long()]
    return panoptic.cpu().numpy(), things, stuff


class MaskFormerFuser:
    """Mask2Former's panoptic inference rule on binary proposal masks, in numpy (no torch import)."""

    def __init__(self, config: MaskFormerFuserConfig, context: ComponentContext | None = None) -> None:
        self.config = config

    def fuse(self, proposals: ProposalSet, scores: ClassScores, vocabulary: Vocabulary) -> PanopticResult:
        cfg = self.config
        h, w = proposals.image_size
        keep, cols, sc = label_proposals(proposals, scores, cfg.min_class_prob, cfg.use_proposal_score)
        sel = np.flatnonzero(sc > cfg.object_mask_threshold)
        panoptic = np.full((h, w), VOID_ID, np.int32)
        labels: dict[int, tuple[int, float]] = {}
        if len(sel) == 0:
            return PanopticResult.from_map(panoptic, labels, vocabulary)
        # Masks are binary, so the per-pixel argmax of score x mask is the best-scoring proposal
        # covering the pixel (ties: the earlier proposal, as argmax returns the first maximum).
        # Painting proposals best-first into still-free pixels, each within its box, computes it
        # without an (N, H, W) tensor and touches each proposal's box only.
        cur_scores = sc[sel]
        order = np.argsort(-cur_scores, kind="stable")
        owner_np = np.full((h, w), -1, np.int64)
        for k in order.tolist():
            window = proposals.windows[keep[sel[k]]]
            free = owner_np[window]
            free[proposals.masks[keep[sel[k]]][window] & (free < 0)] = k
        own_area = np.bincount(owner_np[owner_np >= 0], minlength=len(sel))
        original_area = proposals.areas[keep[sel]]
        segment_of = np.zeros(len(sel) + 1, np.int32)  # proposal k -> segment id; index -1 -> void
        stuff_segment: dict[int, int] = {}
        stuff_best: dict[int, float] = {}
        next_id = 1
        for k in range(len(sel)):
            cat = vocabulary.categories[int(cols[sel[k]])]
            if own_area[k] == 0 or own_area[k] / original_area[k] < cfg.overlap_threshold:
                continue
            score = float(cur_scores[k])
            if not cat.isthing and cat.id in stuff_segment:
                segment_of[k] = stuff_segment[cat.id]
                stuff_best[cat.id] = max(stuff_best[cat.id], score)
                continue
            segment_of[k] = next_id
            labels[next_id] = (cat.id, score)
            if not cat.isthing:
                stuff_segment[cat.id] = next_id
                stuff_best[cat.id] = score
            next_id += 1
        for cid, sid in stuff_segment.items():
            labels[sid] = (cid, stuff_best[cid])
        panoptic = segment_of[owner_np]
        return PanopticResult.from_map(panoptic, labels, vocabulary)


@hookimpl
def register_fusers(register: RegisterComponent) -> None:
    """Register ``detectron2`` and ``maskformer``."""
    register(
        "detectron2",
        Detectron2Fuser,
        config=Detectron2FuserConfig,
        description="things then stuff, merged by detectron2's combine_semantic_and_instance_outputs",
    )
    register(
        "maskformer",
        MaskFormerFuser,
        config=MaskFormerFuserConfig,
        description="Mask2Former's rule: per-pixel best score x mask, overlap threshold, stuff merged",
    )
