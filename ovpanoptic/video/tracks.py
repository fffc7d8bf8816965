"""Track bookkeeping: ids, keyframe matching, class votes, track ends, and per-frame composition.

How ids are kept (see ``docs/video.md``):

* On a keyframe the image pipeline segments the frame. Its thing segments are matched to the
  live tracks with a Hungarian assignment (:func:`scipy.optimize.linear_sum_assignment`) over the
  pairs the evidence allows:

  - a track the tracker *carried* to this frame (its predicted mask is not empty) may be continued
    by a detection whose mask IoU with that mask is >= ``match_iou`` and whose class is the track's;
    a detection of *another* class continues it only when the classifier's image features of the
    detection and of the track's last detection agree (cosine similarity >= ``reid_similarity``):
    the same object, classified differently (the vote below decides its class, and a change of the
    voted class is recorded). Without features (a classifier that exposes none) another class
    never continues a track: the detection starts a new one. A lower IoU is enough when all the
    evidence of a re-identification (below) agrees: an object the keyframe sees much more (or
    less) of than the tracker carried, e.g. one coming out from behind another.
  - a track the tracker *lost* (empty or no predicted mask) is *re-identified* only by evidence:
    the detection covers where the track was last seen (``|det ∩ last| / min(|det|, |last|)`` >=
    ``match_iou``: the last visible mask of an object that left through the frame's edge is a
    sliver), it has the track's class, **and** its image features match the track's last
    detection's (cosine >= ``reid_similarity``). Without features there is no re-identification.

  Among allowed pairs a detection of the track's class gains 1 over any other, then the total
  overlap decides. Matched detections keep the track's id; other detections start new tracks with
  fresh ids; live tracks that no detection matched are *missed*: they are drawn where the tracker
  carries them only on pixels the keyframe left void.
* A stuff class keeps one segment id for the whole video (COCO-panoptic allows one segment per
  stuff class per image, so the class is the identity). Between keyframes stuff is *held*: the
  keyframe's stuff map, with the pixels its things covered given to the nearest stuff class
  (:func:`scipy.ndimage.distance_transform_edt`), lies under the tracked things, so whatever a
  moving thing uncovers is labelled. Only things go to the tracker (SAM 2's video predictor costs
  about the same per object as a whole frame's encoding on a CPU, and stuff regions are not
  objects); ``track_stuff`` hands it the stuff too.
* A track ends when it has been invisible for more than ``max_unseen`` processed frames, or missed
  on more than ``max_missed`` keyframes in a row. Ended ids are never reused.
* A track's class is a running vote over its keyframe detections: each detection is one vote for
  its class (its score is summed too, and shown). The track changes class only when another class
  has strictly more votes than the current one, so one bad frame never flips it (at worst it
  ties), and a class seen on most keyframes wins. Every frame carries the vote *as of that frame*
  (the output never rewrites earlier frames with a later vote), and each change is recorded
  (:attr:`TrackRecord.class_changes`): a change is a decision the record shows, and the temporal
  consistency check (``eval-video``) reports it.

Thing segment ids in every output frame are track ids (the convention of VIPSeg, KITTI-STEP and
Cityscapes-VPS: a segment id names the same object in every frame of a video).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..constants import MAX_SEGMENT_ID, VOID_ID
from ..errors import InputError
from ..types import PanopticResult, TrackMasks, Vocabulary

__all__ = [
    "DEFAULT_REID_SIMILARITY", "MAX_KEYFRAME_EVERY", "Track", "TrackBook", "TrackRecord", "TrackingOptions", "fuse_bidirectional",
    "segment_embeddings",
]

#: Default cosine similarity of the classifier's image features above which a lost track is
#: re-identified, or a detection of another class continues a carried track (``--reid-similarity``).
#: CLIP crop embeddings of one object seen twice are typically >= 0.85 apart from noise; two
#: objects of one class often reach 0.7-0.8: 0.8 errs towards a new id.
DEFAULT_REID_SIMILARITY = 0.8

#: The largest keyframe interval K. The tracker gets a keyframe window of K + 1 frames at once, so
#: a window's frames are all in memory together (decoded, and resized to the working size): K bounds
#: the memory of a run, whatever the video's length.
MAX_KEYFRAME_EVERY = 300


@dataclass(frozen=True)
class TrackingOptions:
    """How keyframes, matching and track ends work.

    :param keyframe_every: run the image pipeline on every K-th processed frame (1 <= K <=
        :data:`MAX_KEYFRAME_EVERY`); the tracker carries objects in between. K = 1 segments every
        frame (ids matched by IoU).
    :param match_iou: a detection continues a track when their mask IoU is at least this (0..1].
    :param max_unseen: a track ends after being invisible on more than this many processed frames.
    :param max_missed: a track ends after no detection matched it on more than this many
        keyframes in a row.
    :param track_stuff: hand stuff segments to the tracker too (default: stuff is held from the
        keyframe, see the module docstring).
    :param reid_similarity: cosine similarity (0, 1] of the classifier's image features needed to
        re-identify a lost track, or to continue a track with a detection of another class.
    :param bidirectional: also run the tracker backward from each next keyframe and fuse the two
        passes on the frames between (:func:`fuse_bidirectional`; ``docs/video.md``): ``True``,
        ``False``, or ``None`` for the tracker's own default (its ``bidirectional`` class attribute; off
        when it has none: a tracker opts in; ``flow``: on, ``hold`` and ``sam2-video``: off). Costs one more tracker
        pass per window, and a window's frames are released once the next keyframe is segmented.
    :raises InputError: a value out of range, naming the flag.
    """

    keyframe_every: int = 10
    match_iou: float = 0.5
    max_unseen: int = 20
    max_missed: int = 1
    track_stuff: bool = False
    reid_similarity: float = DEFAULT_REID_SIMILARITY
    bidirectional: bool | None = None

    def __post_init__(self) -> None:
        for name, value, low in (("keyframe_every", self.keyframe_every, 1), ("max_unseen", self.max_unseen, 0), ("max_missed", self.max_missed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if self.keyframe_every > MAX_KEYFRAME_EVERY:
            raise InputError(
                f"--keyframe-every must be at most {MAX_KEYFRAME_EVERY}, got {self.keyframe_every!r}: the tracker holds the "
                f"K + 1 frames from one keyframe to the next in memory at once, so K bounds a run's memory. Use a K up to "
                f"{MAX_KEYFRAME_EVERY} (default 10), or split the video"
            )
        if isinstance(self.match_iou, bool) or not isinstance(self.match_iou, (int, float)) or not 0.0 < self.match_iou <= 1.0:
            raise InputError(f"--match-iou must be a number in (0, 1], got {self.match_iou!r}")
        if isinstance(self.reid_similarity, bool) or not isinstance(self.reid_similarity, (int, float)) or not 0.0 < self.reid_similarity <= 1.0:
            raise InputError(f"--reid-similarity must be a number in (0, 1] (a cosine similarity), got {self.reid_similarity!r}")
        if not isinstance(self.track_stuff, bool):
            raise InputError(f"track_stuff must be True or False, got {self.track_stuff!r}")
        if self.bidirectional is not None and not isinstance(self.bidirectional, bool):
            raise InputError(f"bidirectional must be True, False or None (the tracker's default), got {self.bidirectional!r}")


@dataclass
class Track:
    """One tracked object or stuff class (mutable bookkeeping, kept by :class:`TrackBook`)."""

    id: int
    isthing: bool
    category_id: int
    votes: dict[int, float] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    first_frame: int = -1
    last_frame: int = -1
    frames_seen: int = 0
    score_sum: float = 0.0
    detections: int = 0
    unseen: int = 0
    missed: int = 0
    ended_at: int | None = None
    last_mask: np.ndarray | None = field(default=None, repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)
    class_changes: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Mean score of the track's keyframe detections."""
        return self.score_sum / self.detections if self.detections else 0.0

    def vote(self, category_id: int, score: float, index: int = -1) -> None:
        """Count a keyframe detection of ``category_id`` (with ``score``) on frame ``index``; the class
        changes only when another class has strictly more detections than the current one (the
        higher summed score decides between challengers with equal counts), and a change is
        recorded in :attr:`class_changes` as ``(index, old, new)``."""
        self.votes[category_id] = self.votes.get(category_id, 0.0) + float(score)
        self.counts[category_id] = self.counts.get(category_id, 0) + 1
        self.score_sum += float(score)
        self.detections += 1
        best = max(self.counts, key=lambda c: (self.counts[c], self.votes[c]))
        if self.counts[best] > self.counts.get(self.category_id, 0) and best != self.category_id:
            self.class_changes.append((index, self.category_id, best))
            self.category_id = best


@dataclass(frozen=True)
class TrackRecord:
    """A row of the tracks table.

    :param id: the track id (its segment id in every frame's PNG).
    :param category_id: the voted class.
    :param isthing: thing (an object) or stuff (a class region).
    :param first_frame: source index of the first frame it is visible in.
    :param last_frame: source index of the last frame it is visible in.
    :param frames_seen: processed frames it is visible in.
    :param score: mean score of its keyframe detections.
    :param ended: whether the track ended before the video did.
    :param votes: class id -> (keyframe detections of that class, their summed score).
    :param class_changes: ``(frame index, old class id, new class id)`` for each change of the voted
        class (frames from that one on carry the new class).
    """

    id: int
    category_id: int
    isthing: bool
    first_frame: int
    last_frame: int
    frames_seen: int
    score: float
    ended: bool
    votes: Mapping[int, tuple[int, float]]
    class_changes: tuple[tuple[int, int, int], ...] = ()


def _overlap_matrices(labels: np.ndarray, count: int, refs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(count, len(refs))`` mask IoU, and intersection over the smaller area, of the detections of
    a label map (``labels``: ``(H, W)`` ints, detection ``i`` is label ``i + 1``, 0 none; detections
    never overlap) with possibly overlapping ``(H, W)`` bool masks. One ``bincount`` per mask over
    its own pixels: no ``(N, H*W)`` stack."""
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.float64)
    iou = np.zeros((count, len(refs)), np.float64)
    cover = np.zeros((count, len(refs)), np.float64)
    for j, ref in enumerate(refs):
        inter = np.bincount(labels[ref], minlength=count + 1)[1:].astype(np.float64)
        ref_area = float(np.count_nonzero(ref))
        union = areas + ref_area - inter
        iou[:, j] = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
        smaller = np.minimum(areas, ref_area)
        cover[:, j] = np.where(smaller > 0, inter / np.maximum(smaller, 1.0), 0.0)
    return iou, cover


def _unit(vector: np.ndarray | None) -> np.ndarray | None:
    """``vector`` L2-normalised as float64, or ``None`` (also for a zero or non-finite vector)."""
    if vector is None:
        return None
    v = np.asarray(vector, np.float64).ravel()
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 and np.isfinite(norm) else None


def segment_embeddings(result: PanopticResult, proposal_masks: np.ndarray, embeddings: np.ndarray | None) -> dict[int, np.ndarray]:
    """The classifier's image features of each thing segment of a fused ``result``: the proposals'
    ``embeddings`` (``(N, D)``, one row per proposal) averaged with weights = how many of the
    segment's pixels each proposal covers, L2-normalised (a fused thing segment is, in practice,
    one proposal minus what others took). Empty when ``embeddings`` is ``None``.

    :param result: the fused result, at the proposals' size.
    :param proposal_masks: ``(N, H, W)`` bool.
    """
    if embeddings is None or len(embeddings) == 0:
        return {}
    pm = np.asarray(result.panoptic_map)
    masks = np.asarray(proposal_masks)
    if masks.shape[1:] != pm.shape:
        return {}
    out: dict[int, np.ndarray] = {}
    for seg in result.segments:
        if not seg.isthing:
            continue
        where = pm == seg.id
        weights = masks[:, where].sum(axis=1).astype(np.float64)
        if weights.sum() == 0:
            continue
        unit = _unit(weights @ np.asarray(embeddings, np.float64))
        if unit is not None:
            out[seg.id] = unit.astype(np.float32)
    return out


def _fill_from_nearest(labels: np.ndarray, where: np.ndarray) -> None:
    """Give each ``where`` pixel of the ``(H, W)`` map ``labels`` the value of the nearest non-void
    pixel of ``labels`` (:func:`scipy.ndimage.distance_transform_edt`), in place; nothing when
    ``labels`` is all void."""
    if not where.any() or not labels.any():
        return
    from scipy.ndimage import distance_transform_edt

    _, (iy, ix) = distance_transform_edt(labels == VOID_ID, return_indices=True)
    labels[where] = labels[iy[where], ix[where]]


def fuse_bidirectional(
    forward: np.ndarray, backward: np.ndarray, offset: int, interval: int, allowed: Collection[int], things: Collection[int]
) -> np.ndarray:
    """One frame between two keyframes from a forward and a backward tracker pass (keyframe
    interpolation, as in video label propagation): per pixel,

    * only ``allowed`` ids (tracks alive on both keyframes) come from ``backward``; others count as
      void there, so no id appears before the keyframe that started it;
    * where the passes agree, or ``backward`` has nothing, the forward label stays;
    * where ``forward`` is void, the backward label is taken;
    * a thing of either pass wins over the other's stuff (held stuff is filler under the tracked
      things: a part of an object hidden on the earlier keyframe and uncovered later is found by
      the backward pass, which saw it);
    * other disagreements (thing against thing, stuff against stuff) go to the nearer keyframe:
      the backward pass where ``offset > interval / 2``.

    :param forward: ``(H, W)`` int ids carried from the earlier keyframe (``offset`` frames back).
    :param backward: ``(H, W)`` int ids carried back from the next keyframe (``interval - offset``
        frames ahead).
    :param offset: the frame's distance from the earlier keyframe, ``0 < offset < interval``.
    :param interval: the distance between the two keyframes.
    :param allowed: ids the backward pass may give.
    :param things: the thing (object) ids among either map's ids; the rest are stuff.
    :return: the fused ``(H, W)`` int32 map.
    """
    if forward.shape != backward.shape:
        raise ValueError(f"the passes' maps differ in size: {forward.shape} and {backward.shape}")
    if not 0 < offset < interval:
        raise ValueError(f"offset must be in (0, {interval}), got {offset}")
    back = np.where(np.isin(backward, np.fromiter(allowed, np.int64)), backward, VOID_ID)
    thing_ids = np.fromiter(things, np.int64)
    f_thing, b_thing = np.isin(forward, thing_ids), np.isin(back, thing_ids)
    has_back = back != VOID_ID
    take = has_back & ((forward == VOID_ID) | (b_thing & ~f_thing))
    if 2 * offset > interval:
        take |= has_back & (f_thing == b_thing)
    return np.where(take, back, forward).astype(np.int32)


class TrackBook:
    """The tracks of one video: assigns ids on keyframes and composes every frame's result.

    :param vocabulary: the run's vocabulary (every result must use it).
    :param options: :class:`TrackingOptions`.
    """

    def __init__(self, vocabulary: Vocabulary, options: TrackingOptions) -> None:
        self.vocabulary = vocabulary
        self.options = options
        self.tracks: dict[int, Track] = {}
        self.stuff_ids: dict[int, int] = {}
        self.next_id = 1
        self._previous: np.ndarray | None = None  # the last composed map (to fill what things vacate)
        self._stuff_base: np.ndarray | None = None  # the last keyframe's stuff, things' pixels filled

    # -- ids ----------------------------------------------------------------------------------

    def _new_id(self) -> int:
        if self.next_id > MAX_SEGMENT_ID:
            raise InputError(f"more than {MAX_SEGMENT_ID} tracks in one video: the PNG id space is full; split the video")
        self.next_id += 1
        return self.next_id - 1

    def live(self, isthing: bool | None = None) -> list[Track]:
        """Tracks that have not ended (things, stuff, or both), by id."""
        return [t for t in sorted(self.tracks.values(), key=lambda t: t.id) if t.ended_at is None and (isthing is None or t.isthing == isthing)]

    def _stuff_track(self, category_id: int) -> Track:
        sid = self.stuff_ids.get(category_id)
        if sid is None:
            sid = self.stuff_ids[category_id] = self._new_id()
            self.tracks[sid] = Track(sid, False, category_id)
        track = self.tracks[sid]
        track.ended_at = None  # a stuff class that comes back keeps its id
        return track

    # -- keyframes ----------------------------------------------------------------------------

    def keyframe(
        self,
        index: int,
        result: PanopticResult,
        predicted: TrackMasks | None,
        features: Mapping[int, np.ndarray] | None = None,
        *,
        plan: Mapping[int, int] | None = None,
    ) -> PanopticResult:
        """Assign track ids to a keyframe's segmentation (module docstring).

        :param index: the frame's source index.
        :param result: the image pipeline's result for the frame (any segment ids).
        :param predicted: the tracker's masks of the live tracks on this frame (``None`` on the first
            keyframe, or when the frame was not tracked), at the result's size.
        :param features: the classifier's image features of the result's thing segments, by
            segment id (:func:`segment_embeddings`); without them, no re-identification and no
            continuation by another class.
        :param plan: the matching already decided (thing segment id -> track id, :meth:`assignment`
            of a :meth:`fork`'s keyframe): a segment planned onto a live thing track continues it,
            any other starts a new track. The bidirectional run decides the next keyframe's ids
            before the frames between are composed (the backward pass needs them).
        :return: the frame's result with thing ids = track ids and stuff ids = the class's id.
        """
        if result.vocabulary != self.vocabulary:
            raise ValueError("the keyframe result uses another vocabulary than the video's")
        pm = np.asarray(result.panoptic_map)
        things = [s for s in result.segments if s.isthing]
        lookup = np.zeros(int(pm.max(initial=0)) + 1, np.int64)
        for i, s in enumerate(things):
            lookup[s.id] = i + 1
        det_labels = lookup[pm]  # detection i + 1 where thing segment i is, else 0
        pred = predicted.as_dict() if predicted is not None else {}
        feats = {int(k): _unit(v) for k, v in (features or {}).items()}
        candidates = self.live(True)
        refs, carried = [], []
        for t in candidates:
            m = pred.get(t.id)
            carried.append(m is not None and bool(m.any()))
            if not carried[-1]:
                m = t.last_mask if t.last_mask is not None else np.zeros(pm.shape, bool)
            refs.append(m)
        pairs: dict[int, Track] = {}
        if plan is not None:
            live = {t.id: t for t in candidates}
            pairs = {r: live[plan[seg.id]] for r, seg in enumerate(things) if plan.get(seg.id) in live}
        iou, cover = _overlap_matrices(det_labels, len(things), refs) if plan is None else (np.zeros((0, 0)), np.zeros((0, 0)))
        if iou.size:
            from scipy.optimize import linear_sum_assignment

            same = np.array([[seg.category_id == t.category_id for t in candidates] for seg in things], dtype=bool)
            similar = np.zeros(iou.shape, bool)
            for r, seg in enumerate(things):
                mine = feats.get(seg.id)
                if mine is None:
                    continue
                for c, t in enumerate(candidates):
                    theirs = _unit(t.embedding)
                    similar[r, c] = theirs is not None and float(mine @ theirs) >= self.options.reid_similarity
            now = np.array(carried, bool)[None, :]
            overlap = np.where(now, iou, cover)
            evidence = (cover >= self.options.match_iou) & same & similar  # overlap, class and features all agree
            allowed = np.where(now, ((iou >= self.options.match_iou) & (same | similar)) | evidence, evidence)
            gain = np.where(allowed, overlap + same, 0.0)
            rows, cols = linear_sum_assignment(gain, maximize=True)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if allowed[r, c]:
                    pairs[r] = candidates[c]
        matched: set[int] = set()
        track_of = np.zeros(len(things) + 1, np.int32)  # detection label -> track id
        for r, seg in enumerate(things):
            track = pairs.get(r)
            if track is None:
                tid = self._new_id()
                track = self.tracks[tid] = Track(tid, True, seg.category_id)
            track.vote(seg.category_id, seg.score, index)
            track.missed = 0
            if feats.get(seg.id) is not None:
                track.embedding = feats[seg.id].astype(np.float32)
            matched.add(track.id)
            track_of[r + 1] = track.id
        out = track_of[det_labels]
        for seg in result.segments:
            if not seg.isthing:
                track = self._stuff_track(seg.category_id)
                track.vote(seg.category_id, seg.score, index)
                out[pm == seg.id] = track.id
        # Missed tracks: drawn where the tracker carries them only on pixels the keyframe left void (the
        # keyframe's detections, stuff included, win: a tracker that holds a stale mask adds nothing).
        for track in candidates:
            if track.id in matched:
                continue
            track.missed += 1
            if track.missed > self.options.max_missed:
                track.ended_at, track.last_mask = index, None  # an ended track keeps no pixels
                continue
            m = pred.get(track.id)
            if m is not None and m.any():
                out[m & (out == VOID_ID)] = track.id
        self._hold_stuff(out)
        return self._finish(index, out, result.timings)

    def _hold_stuff(self, out: np.ndarray) -> None:
        """Keep ``out``'s stuff for the frames up to the next keyframe, its things' pixels given to
        the nearest stuff pixel's class (void pixels stay void)."""
        stuff_ids = [t.id for t in self.tracks.values() if not t.isthing]
        thing_ids = [t.id for t in self.tracks.values() if t.isthing]
        base = np.where(np.isin(out, stuff_ids), out, VOID_ID).astype(np.int32)
        _fill_from_nearest(base, np.isin(out, thing_ids))
        self._stuff_base = base

    # -- tracked frames -----------------------------------------------------------------------

    def tracked(self, index: int, masks: TrackMasks) -> PanopticResult:
        """Compose a frame from the tracker's masks (:meth:`compose`) and record it."""
        return self._finish(index, self.compose(masks), {})

    def composed(self, index: int, panoptic_map: np.ndarray) -> PanopticResult:
        """Record a frame composed elsewhere (a :func:`fuse_bidirectional` of two passes' maps):
        ids that are not live tracks become void."""
        out = np.asarray(panoptic_map, np.int32)
        live = np.fromiter((t.id for t in self.live()), np.int64)
        return self._finish(index, np.where(np.isin(out, live), out, VOID_ID).astype(np.int32), {})

    def compose(self, masks: TrackMasks) -> np.ndarray:
        """A frame's ``(H, W)`` int32 map from the tracker's masks (nothing is recorded).

        Things are painted over stuff, the higher-scoring track on top where two overlap. Stuff is
        the held keyframe stuff (module docstring); with ``track_stuff`` it is the tracker's stuff
        masks, and pixels a thing held on the previous frame that no mask now covers take the
        nearest stuff class (:func:`scipy.ndimage.distance_transform_edt`). Either way every pixel
        stays labelled as objects move.
        """
        h, w = masks.image_size
        out = np.zeros((h, w), np.int32)
        if not self.options.track_stuff and self._stuff_base is not None and self._stuff_base.shape == (h, w):
            live_stuff = [t.id for t in self.live(False)]
            out = np.where(np.isin(self._stuff_base, live_stuff), self._stuff_base, VOID_ID).astype(np.int32)
        known = {int(i): m for i, m in zip(masks.ids, masks.masks, strict=True) if int(i) in self.tracks and self.tracks[int(i)].ended_at is None}
        for tid, m in known.items():
            if not self.tracks[tid].isthing:
                out[m] = tid
        stuff = out.copy()
        for tid in sorted((t for t in known if self.tracks[t].isthing), key=lambda t: (self.tracks[t].score, -t)):
            out[known[tid]] = tid
        if self.options.track_stuff and self._previous is not None and self._previous.shape == out.shape:
            was_thing = np.isin(self._previous, [t.id for t in self.tracks.values() if t.isthing])
            vacated = was_thing & (out == VOID_ID)
            _fill_from_nearest(stuff, vacated)
            out[vacated] = stuff[vacated]
        return out

    def fork(self) -> TrackBook:
        """An independent copy of the bookkeeping (the vocabulary shared): the bidirectional run
        composes the forward pass and matches the next keyframe on it, as a forward-only run would."""
        return copy.deepcopy(self, {id(self.vocabulary): self.vocabulary})

    @staticmethod
    def assignment(result: PanopticResult, composed: PanopticResult) -> dict[int, int]:
        """The track id :meth:`keyframe` gave each thing segment of ``result`` (segment id -> id
        in ``composed``, its return), a ``plan`` for :meth:`keyframe`."""
        pm, out = np.asarray(result.panoptic_map), np.asarray(composed.panoptic_map)
        plan = {}
        for seg in result.segments:
            if seg.isthing:
                where = out[pm == seg.id]
                if where.size:
                    plan[seg.id] = int(where[0])
        return plan

    # -- shared ------------------------------------------------------------------------------

    def _finish(self, index: int, out: np.ndarray, timings: Mapping[str, float]) -> PanopticResult:
        """The result of a composed map (each id labelled with its track's class and mean score),
        and the tracks' visibility bookkeeping for this frame."""
        labels = {tid: (self.tracks[tid].category_id, self.tracks[tid].score) for tid in np.unique(out).tolist() if tid != VOID_ID}
        result = PanopticResult.from_map(out, labels, self.vocabulary, timings)
        visible = {s.id for s in result.segments}
        for track in self.tracks.values():
            if track.ended_at is not None:
                continue
            if track.id in visible:
                if track.first_frame < 0:
                    track.first_frame = index
                track.last_frame = index
                track.frames_seen += 1
                track.unseen = 0
                if track.isthing:
                    track.last_mask = out == track.id
            else:
                track.unseen += 1
                if track.unseen > self.options.max_unseen:
                    track.ended_at = index
                    track.last_mask = None
        self._previous = out
        return result

    def seeds(self, result: PanopticResult) -> TrackMasks:
        """The objects to hand the tracker from a composed frame: its things (and its stuff with
        ``track_stuff``), by track id."""
        pm = np.asarray(result.panoptic_map)
        ids = [s.id for s in result.segments if s.isthing or self.options.track_stuff]
        masks = np.stack([pm == i for i in ids]) if ids else np.zeros((0, *pm.shape), bool)
        return TrackMasks(np.asarray(ids, np.int64), masks)

    def records(self) -> list[TrackRecord]:
        """The tracks table, by id (tracks never visible are left out; tracks still live are not ``ended``)."""
        out = []
        for t in sorted(self.tracks.values(), key=lambda t: t.id):
            if t.frames_seen == 0:
                continue
            out.append(
                TrackRecord(
                    id=t.id,
                    category_id=t.category_id,
                    isthing=t.isthing,
                    first_frame=t.first_frame,
                    last_frame=t.last_frame,
                    frames_seen=t.frames_seen,
                    score=round(t.score, 6),
                    ended=t.ended_at is not None,
                    votes={c: (t.counts.get(c, 0), round(v, 6)) for c, v in t.votes.items()},
                    class_changes=tuple(t.class_changes),
                )
            )
        return out

    # -- resume -------------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """JSON-ready bookkeeping (without masks) for resuming after a keyframe."""
        return {
            "next_id": self.next_id,
            "stuff_ids": {str(k): v for k, v in self.stuff_ids.items()},
            "tracks": [
                {
                    "id": t.id, "isthing": t.isthing, "category_id": t.category_id,
                    "votes": {str(k): v for k, v in t.votes.items()}, "counts": {str(k): v for k, v in t.counts.items()},
                    "first_frame": t.first_frame,
                    "last_frame": t.last_frame, "frames_seen": t.frames_seen, "score_sum": t.score_sum,
                    "detections": t.detections, "unseen": t.unseen, "missed": t.missed, "ended_at": t.ended_at,
                    "class_changes": [list(c) for c in t.class_changes],
                    "embedding": None if t.embedding is None else [float(x) for x in t.embedding],
                }
                for t in sorted(self.tracks.values(), key=lambda t: t.id)
            ],
        }

    def restore(self, state: Mapping[str, object], last: PanopticResult) -> None:
        """Restore :meth:`state` with ``last``, the composed result of the frame it was saved after
        (live things' last masks come from it)."""
        self.next_id = int(state["next_id"])  # type: ignore[call-overload]
        self.stuff_ids = {int(k): int(v) for k, v in dict(state["stuff_ids"]).items()}  # type: ignore[call-overload]
        self.tracks = {}
        pm = np.asarray(last.panoptic_map)
        for d in state["tracks"]:  # type: ignore[attr-defined]
            t = Track(
                id=int(d["id"]), isthing=bool(d["isthing"]), category_id=int(d["category_id"]),
                votes={int(k): float(v) for k, v in d["votes"].items()}, counts={int(k): int(v) for k, v in d["counts"].items()},
                first_frame=int(d["first_frame"]),
                last_frame=int(d["last_frame"]), frames_seen=int(d["frames_seen"]), score_sum=float(d["score_sum"]),
                detections=int(d["detections"]), unseen=int(d["unseen"]), missed=int(d["missed"]),
                ended_at=None if d["ended_at"] is None else int(d["ended_at"]),
                class_changes=[(int(a), int(b), int(c)) for a, b, c in d.get("class_changes", [])],
                embedding=None if d.get("embedding") is None else np.asarray(d["embedding"], np.float32),
            )
            if t.isthing and t.ended_at is None and (pm == t.id).any():
                t.last_mask = pm == t.id
            self.tracks[t.id] = t
        self._previous = pm.copy()
        self._hold_stuff(self._previous)
