"""The demo's handlers as plain functions: ``handler(app, session, ...)`` changes the session and
raises ovpanoptic's own errors (the layout turns them into the page's error box). No gradio here,
so each is tested by calling it.

* :func:`segment`: a run (image, class names, preset, thresholds), with stage progress and cancel;
* :func:`retune`: a threshold changed: re-fuse from the cache, or say that proposals must be recomputed;
* :func:`image_changed`: an upload is checked at once, and the old result is marked stale;
* :func:`click`: on the image: select a segment, or add a point / box corner of a SAM 2 prompt;
* :func:`accept`, :func:`relabel`, :func:`delete`, :func:`merge`, :func:`undo`: corrections;
* :func:`download`: the zip of the current result (see :mod:`.downloads`).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..components import Downloadable
from ..editing import add_category, add_segment, delete_segment, erase_segment, merge_segments, paint_segment, relabel_segment
from ..errors import Cancelled, InputError, OvpanopticError, WeightsError
from ..pipeline import Pipeline, SegmentationRun
from ..types import PanopticResult, Prompt, normalize_name
from .resources import TUNABLE, DemoResources
from .downloads import write_download
from .render import plural
from .state import RunRequest, Session

__all__ = [
    "BOX",
    "BRUSH",
    "BRUSH_RADIUS",
    "CLASS_KINDS",
    "ERASER",
    "MODES",
    "NEGATIVE",
    "POSITIVE",
    "SELECT",
    "SELECT_MANY",
    "accept",
    "cancel",
    "click",
    "request_run",
    "delete",
    "download",
    "explain",
    "image_changed",
    "load_labels",
    "merge",
    "position",
    "set_images",
    "step",
    "relabel",
    "retune",
    "segment",
    "select",
    "undo",
]

#: What a click on the image does: select one segment (the default), select several (each click
#: adds or removes one), SAM 2 prompt points and box corners.
SELECT = "select segment"
POSITIVE = "add point (+)"
NEGATIVE = "remove point (-)"
BOX = "box (2 clicks)"
SELECT_MANY = "select several"
#: The brush paints a disc into the selected segment; the eraser clears the selected segment's
#: pixels in the disc (pixel edits, undoable).
BRUSH = "brush"
ERASER = "eraser"
MODES: tuple[str, ...] = (SELECT, POSITIVE, NEGATIVE, BOX, SELECT_MANY, BRUSH, ERASER)
#: The brush's radius (image pixels) unless the page says otherwise.
BRUSH_RADIUS = 8
#: Stage names of :meth:`Pipeline.segment_run`'s progress, as the page says them.
STAGES: dict[str, str] = {
    "weights": "weights: finding the models' checkpoints (first run of a preset only; downloads them when online)",
    "proposals": "proposals: mask proposals of the image (loads the generator's weights on first use)",
    "image features": "image features (loads the classifier's weights on first use)",
    "classification": "classification: scoring proposals against the class names",
    "fusion": "fusion: one panoptic map",
}

ProgressFn = Callable[[str, int, int], None]

#: Options that name a component's weights (the first one its config has is the setting to give).
WEIGHT_OPTIONS: tuple[str, ...] = ("model", "pretrained", "checkpoint", "weights")
#: The component whose weights a stage loads.
STAGE_KINDS: dict[str, str] = {
    "starting": "classifier",  # the class names are encoded first
    "proposals": "proposal_generator",
    "image features": "classifier",
    "classification": "classifier",
}


def weights_setting(pipe: Pipeline, kind: str, name: str | None = None) -> str | None:
    """The ``--set`` key that names the weights of the ``kind`` component (``name``: another than
    the configured one), e.g. ``tracker.sam2-video.model``; ``None`` when it has no such option."""
    name = name or getattr(pipe.config.pipeline, kind)
    try:
        config = pipe.component_config(kind, name)
    except OvpanopticError:
        return None
    option = next((o for o in WEIGHT_OPTIONS if hasattr(config, o)), None)
    return f"{kind}.{name}.{option}" if option else None


def name_weights_setting(exc: WeightsError, setting: str | None) -> WeightsError:
    """``exc`` with the setting to restart the demo with (the one of the component whose weights
    are missing, not the one of another component)."""
    if setting is None or "--set" in str(exc):
        return exc
    message = str(exc)
    if message.endswith("local checkpoint path"):
        return WeightsError(
            f"{message}: restart the demo with it: --set \"{setting}='/path/to/checkpoint.pt'\" "
            "(`ovpanoptic presets interactive` lists the options)"
        )
    return WeightsError(f"{message} (the setting that names these weights: {setting})")


def find_weights(app: DemoResources, pipe: Pipeline, kinds: Sequence[str], report: ProgressFn, names: Sequence[str] = ()) -> None:
    """The ``weights`` stage: resolve (find, or download when online) the checkpoints of the
    pipeline's components of ``kinds`` (``names``: other components than the configured ones) that
    have weights, once per component and settings for the app.

    :raises WeightsError: naming the setting of the component whose weights are missing.
    """
    for i, kind in enumerate(kinds):
        name = names[i] if i < len(names) and names[i] else getattr(pipe.config.pipeline, kind)
        key = (kind, name, repr(pipe.component_config(kind, name)))
        if key in app.weights_ready:
            continue
        component = pipe.component(kind, name)
        if isinstance(component, Downloadable):
            report("weights", 0, 0)
            report(f"{kind.replace('_', ' ')} {name}", i, len(kinds))
            try:
                component.download()
            except WeightsError as exc:
                raise name_weights_setting(exc, weights_setting(pipe, kind, name)) from None
        app.weights_ready.add(key)


class _Reporter:
    """The pipeline's progress callback: forwards to the page, raises :class:`Cancelled` once the
    session's Cancel was pressed (components call it often, so a cancel lands within a batch).

    Each report says its stage: a component's own counted steps read ``"proposals: points 3/10 ·
    about 4 s left"`` (the estimate from the stage's pace so far). :attr:`stage` is the stage
    running (the last of :data:`STAGES` reported)."""

    def __init__(self, session: Session, progress: ProgressFn | None, started: float) -> None:
        self.session, self.progress, self.started = session, progress, started
        self.stage = "starting"
        self.stage_started = started

    def __call__(self, message: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.session.cancel.is_set():
            raise Cancelled(cancelled_text(self.session, now - self.started, f"during {self.stage}"))
        if message in STAGES:
            self.stage, self.stage_started = message, now
            message = STAGES[message]
        else:
            if self.stage in STAGES:
                message = f"{self.stage}: {message}"
            if total and f"{done}/{total}" not in message:
                message = f"{message} {done}/{total}"
            if total and 0 < done < total:
                left = (now - self.stage_started) / done * (total - done)
                message = f"{message} · about {max(1, round(left))} s left"
        if self.progress is not None:
            self.progress(message, done, total)


def cancelled_text(session: Session, elapsed: float, where: str, kept: str | None = None) -> str:
    """The notice of a run stopped by Cancel: how long after the click it stopped, where, what is kept."""
    if kept is None:
        kept = "the previous result is kept" if session.result is not None else "nothing was segmented"
    late = time.perf_counter() - session.cancel_at if session.cancel_at else 0.0
    return (
        f"Cancelled {late:.2f} s after you pressed Cancel ({elapsed:.1f} s into the run, {where}); {kept}. "
        "Class names encoded before the cancel stay cached."
    )


def request_run(session: Session) -> None:
    """A Segment click, before the run is queued: forget an earlier Cancel, so that a Cancel
    pressed from now on (while the run waits in the queue, or runs) stops this run."""
    session.cancel.clear()
    session.cancel_at = 0.0
    session.running = True
    session.typed_applied = None


def cancel(session: Session) -> None:
    """Ask the session's queued or running segmentation to stop (at its next progress report)."""
    if not session.running:
        session.notice = "Nothing is running: Cancel stops a Segment run while it waits or runs."
        return
    # The notice first: once the flag is set the run may stop at once and write its own "Cancelled
    # after ..." notice, which must not be overwritten by this one (the page then kept "Cancelling").
    session.notice = "Cancelling: the run stops at its next progress report."
    session.cancel_at = time.perf_counter()
    session.cancel.set()


def image_changed(app: DemoResources, session: Session, image: Any) -> None:
    """An upload (or an example, or clearing the image): decode it now so a non-image is refused at
    once (the page then clears it), and mark the result stale when it is of another image.

    :raises ImageReadError, InputError: the upload is not an image, or is too large.
    """
    session.error = session.notice = ""
    if image is None or (isinstance(image, dict) and not image.get("path")):
        session.image = None
        if session.result is not None:
            session.stale = "the image was removed: upload one and press Segment"
        return
    try:
        loaded = app.load_image(image)
    except OvpanopticError:
        session.image = None
        raise
    session.image = loaded
    session.clear_prompt()
    if session.result_image != loaded.digest and session.resume(loaded.digest):
        session.notice = f"Back to {loaded.name}: its result as you left it (Undo too)."
    elif session.result is not None:
        same = session.result_image == loaded.digest
        session.stale = "" if same else (
            f"press Segment to segment {loaded.name} (the result of the previous image is kept: open that image again to go back)"
        )


def segment(
    app: DemoResources, session: Session, request: RunRequest, progress: ProgressFn | None = None, *, fresh: bool = True
) -> None:
    """Segment the session's image with the request's class names, preset and thresholds.

    The named vocabulary's names are encoded first, with progress per name; each pipeline stage
    is announced; :func:`cancel` stops the run at the next report (the old result stays).

    :param fresh: forget an earlier Cancel first (:func:`request_run`); the page passes ``False``
        because it called :func:`request_run` when the button was clicked, before queueing.

    :raises OvpanopticError: no image, no class names, bad names, unknown preset, missing
        weights, a plugin's fault, :class:`~ovpanoptic.errors.Cancelled`.
    """
    session.error = session.notice = ""
    if fresh:
        request_run(session)
    try:
        _segment(app, session, request, progress)
    finally:
        session.running = False


def _segment(app: DemoResources, session: Session, request: RunRequest, progress: ProgressFn | None) -> None:
    if session.image is None:
        raise InputError("No image: upload an image (or click one of the examples) first")
    started = time.perf_counter()
    report = _Reporter(session, progress, started)
    report("starting", 0, 0)  # a Cancel pressed while the run was queued stops it here
    with app.lock:
        pipe = app.pipeline_for(request.preset, request.tuning)
        find_weights(app, pipe, ("proposal_generator", "classifier"), report)
        try:
            run, encode_s = _run(app, session, pipe, request, report)
        except WeightsError as exc:
            raise name_weights_setting(exc, weights_setting(pipe, STAGE_KINDS.get(report.stage, "classifier"))) from None
    _take(app, session, pipe, run, request, encode_s)


def _run(app: DemoResources, session: Session, pipe: Pipeline, request: RunRequest, report: ProgressFn) -> tuple[SegmentationRun, float]:
    """Encode the class names, then segment the session's image (under the app's lock)."""
    assert session.image is not None
    vocab = app.vocabulary_for(pipe, request)
    names = sum(len(c.names) for c in vocab)
    prompts = app.prompt_count(names, request.preset)

    def encoding(message: str, done: int, total: int) -> None:
        what = f"encoding {plural(total or names, 'class name')}" + (f" ({prompts} prompts)" if prompts else "")
        report(f"{what} {done}/{total}" if total else what, done, total)

    report(f"loading the classifier to encode {plural(names, 'class name')}", 0, 0)
    t0 = time.perf_counter()
    pipe.prepare_vocabulary(vocab, progress=encoding)
    encode_s = time.perf_counter() - t0
    run = pipe.segment_run(session.image.rgb, vocab, progress=report, source=f"<demo: {session.image.stem}>")
    return run, encode_s


def _take(app: DemoResources, session: Session, pipe: Pipeline, run: SegmentationRun, request: RunRequest, encode_s: float) -> None:
    assert session.image is not None
    if session.result is not None and session.result_image != session.image.digest:
        session.keep()  # the previous image's work stays for when it comes back
    seen_before = session.image.digest in session.seen
    session.seen.add(session.image.digest)
    session.result = run.result
    session.result_image = session.image.digest
    session.request = request
    session.history.clear()
    session.clear_prompt()
    session.selected = []
    session.numbers = {}
    session.shown = None
    session.stale = ""
    session.download = None
    session.timings = {"encode names": encode_s, **run.result.timings}
    # "Same image as before" only when this session ran it: the cache is shared, the message is not.
    session.cached = run.cached and seen_before
    session.explanation = explain(pipe, run)


def _options(kind: str, config: Any) -> str:
    """``"option value, ..."`` of a component's :data:`~ovpanoptic.demo.resources.TUNABLE` options."""
    return ", ".join(f"{o} {getattr(config, o):g}" for (k, o) in TUNABLE if k == kind and hasattr(config, o))


def explain(pipe: Pipeline, run: SegmentationRun) -> tuple[str, ...]:
    """Lines saying how many proposals there were, how many got a class, how many became
    segments, and the thresholds that decided it (the fuser's and the generator's options from
    :data:`~ovpanoptic.demo.resources.TUNABLE`)."""
    lines = []
    n = len(run.proposals)
    gen_name = pipe.config.pipeline.proposal_generator
    gen_cfg = pipe.component_config("proposal_generator")
    gen_opts = _options("proposal_generator", gen_cfg)
    lines.append(f"**{plural(n, 'proposal')}** from {gen_name}{f' ({gen_opts})' if gen_opts else ''}")
    fuser_name = pipe.config.pipeline.fuser
    fuser_cfg = pipe.component_config("fuser")
    if n:
        best = run.scores.probs.max(axis=1) if run.scores.probs.size else np.zeros(n, np.float32)
        min_prob = getattr(fuser_cfg, "min_class_prob", None)
        if min_prob is not None:
            lines.append(
                f"**{int((best >= min_prob).sum())} of {n}** reach the class probability {min_prob:g} "
                f"(best {float(best.max()):.2f}, median {float(np.median(best)):.2f})"
            )
        else:
            lines.append(f"best class probabilities: max {float(best.max()):.2f}, median {float(np.median(best)):.2f}")
    fuse_opts = _options("fuser", fuser_cfg)
    segs = len(run.result.segments)
    lines.append(f"**{plural(segs, 'segment')}** after fusion by {fuser_name}{f' ({fuse_opts})' if fuse_opts else ''}")
    if segs == 0:
        if n == 0:
            lines.append("No proposals: lower the generator's thresholds or raise points per side (Thresholds), then Segment.")
        else:
            lines.append("Nothing survived: lower the class probability or the fusion thresholds (Thresholds): the result re-fuses at once.")
    return tuple(lines)


def retune(app: DemoResources, session: Session, tuning: Sequence[str], progress: ProgressFn | None = None) -> None:
    """The threshold controls changed (``tuning``: the ``--set`` overrides that differ from the
    preset). With a current result: when only fusion options changed, re-fuse it from the cache (no
    proposals, no image features); when proposal options changed, say that Segment recomputes the
    proposals with them. Corrections made to the result are replaced (Undo brings them back).
    """
    session.error = session.notice = ""
    if session.result is None or session.request is None or session.image is None or session.stale:
        session.notice = "Thresholds set; they apply when you press Segment."
        return
    changed = {t.split("=", 1)[0] for t in set(tuning) ^ set(session.request.tuning)}
    if not changed:
        return
    if any(key.startswith("proposal_generator.") for key in changed):
        session.notice = "Proposal settings changed: press Segment to recompute the proposals with them."
        return
    before, history = session.snapshot("threshold change"), list(session.history)
    segment(app, session, dataclasses.replace(session.request, tuning=tuple(tuning)), progress)
    session.history = [*history, before]
    session.notice = "Re-fused from the cache with the new thresholds (proposals and image features were not recomputed)."


def _need_result(session: Session) -> None:
    if session.result is None or session.image is None:
        raise InputError("No result yet: upload an image, type class names and press Segment first")
    if session.stale:
        raise InputError(f"The result is stale ({session.stale}); press Segment before correcting it")


def _to_result(session: Session, x: float, y: float, display_size: tuple[int, int]) -> tuple[float, float]:
    """A click on the displayed image (display pixels) in the result's pixels (pixel centres)."""
    assert session.result is not None
    h, w = session.result.image_size
    dh, dw = display_size
    rx = min(w - 1, max(0, int(x * w / dw))) + 0.5
    ry = min(h - 1, max(0, int(y * h / dh))) + 0.5
    return rx, ry


def click(
    app: DemoResources, session: Session, x: float, y: float, mode: str, display_size: tuple[int, int], *, radius: float = BRUSH_RADIUS
) -> None:
    """A click at display pixel ``(x, y)``: select the segment there (:data:`SELECT`: it alone;
    :data:`SELECT_MANY`: add it to the selection, or take it out), or add a prompt point or box
    corner and ask the proposal generator for the mask (:meth:`Pipeline.segment_prompt`).

    :raises InputError: no (current) result, a click outside the image, or a generator without prompts.
    """
    session.error = session.notice = ""
    _need_result(session)
    assert session.result is not None and session.image is not None
    rx, ry = _to_result(session, x, y, display_size)
    if mode in (SELECT, SELECT_MANY):
        sid = int(session.result.panoptic_map[int(ry), int(rx)])
        if sid == 0:
            session.notice = "No segment there (void): draw one with a point or box prompt."
            return
        _choose(session, sid, mode == SELECT_MANY)
        return
    if mode in (BRUSH, ERASER):
        _brush(session, rx, ry, radius, erase=mode == ERASER)
        return
    if mode not in MODES:
        raise InputError(f"a click on the image does one of: {', '.join(MODES)}; got {mode!r}")
    if mode == BOX:
        if session.box_start is None or session.box is not None:
            session.clear_prompt()
            session.box_start = (rx, ry)
            session.notice = "Box: click the opposite corner."
            return
        (x0, y0), (x1, y1) = session.box_start, (rx, ry)
        session.box = (min(x0, x1) - 0.5, min(y0, y1) - 0.5, max(x0, x1) + 0.5, max(y0, y1) + 0.5)
    else:
        session.points.append((rx, ry, 1 if mode == POSITIVE else 0))
    _predict(app, session)


def _brush(session: Session, cx: float, cy: float, radius: float, *, erase: bool) -> None:
    """Paint (or erase) the disc of ``radius`` image pixels around ``(cx, cy)`` for the one selected segment."""
    assert session.result is not None
    if len(session.selected) != 1:
        tool = "eraser" if erase else "brush"
        raise InputError(f"Select one segment for the {tool} first (mode 'select segment'), then paint with it")
    try:
        r = float(radius)
    except (TypeError, ValueError):
        r = math.nan
    if not math.isfinite(r) or not 1 <= r <= 200:
        raise InputError(f"the brush radius must be a number of pixels from 1 to 200, got {radius!r}")
    sid = session.selected[0]
    h, w = session.result.image_size
    yy, xx = np.ogrid[:h, :w]
    disc = (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r
    current = session.result.panoptic_map
    name = _named(session, [sid])
    if erase:
        changed = int((disc & (current == sid)).sum())
        if not changed:
            session.notice = f"The eraser only clears pixels of the selected segment ({name}): none under the click."
            return
        new = erase_segment(session.result, sid, disc)
        session.push(f"erase {changed} pixels of {name}", new)
        session.notice = f"Eraser: {changed} pixels of {name} cleared (radius {r:g} px); Undo takes them back."
    else:
        changed = int((disc & (current != sid)).sum())
        if not changed:
            session.notice = f"Those pixels are {name}'s already."
            return
        new = paint_segment(session.result, sid, disc)
        session.push(f"paint {changed} pixels of {name}", new)
        session.notice = f"Brush: {changed} pixels of {name} painted (radius {r:g} px); Undo takes them back."
    session.selected = [sid] if sid in {s.id for s in new.segments} else []
    session.download = None


def _predict(app: DemoResources, session: Session) -> None:
    assert session.image is not None and session.result is not None and session.request is not None
    if not any(label for _, _, label in session.points) and session.box is None:
        session.notice = "A negative point alone selects nothing: add a positive point (+) or a box."
        session.candidate = None
        return
    prompt = Prompt(
        points_xy=np.array([(x, y) for x, y, _ in session.points], np.float32).reshape(-1, 2),
        point_labels=np.array([label for _, _, label in session.points], np.int32),
        box_xyxy=session.box,
    )
    pipe = app.pipeline_for(session.request.preset, session.request.tuning)
    t0 = time.perf_counter()
    with app.lock:
        try:
            masks = pipe.segment_prompt(session.image.rgb, prompt)
        except WeightsError as exc:
            raise name_weights_setting(exc, weights_setting(pipe, "proposal_generator")) from None
    session.timings["prompt"] = time.perf_counter() - t0
    if len(masks) == 0:
        session.candidate = None
        session.notice = "The prompt gave no mask: click inside the object, or draw a larger box."
        return
    session.candidate = masks.masks[0]
    session.notice = (
        f"Proposed mask: {int(session.candidate.sum())} pixels (score {float(masks.scores[0]):.2f}, "
        f"{session.timings['prompt'] * 1000:.0f} ms). Pick its class and press Add segment; more points refine it."
    )


#: The kinds a new class typed in the Class menu can get ("auto": the stuff lexicon decides).
CLASS_KINDS: tuple[str, ...] = ("auto", "thing", "stuff")


def _category(session: Session, name: str, kind: str = "auto") -> tuple[Any, int]:
    """The vocabulary (extended when the name is new) and category id for a class picked or typed
    (:func:`~ovpanoptic.editing.add_category`: names match ignoring case, Unicode width and
    repeated spaces; ``kind`` ``auto`` keeps an existing class's kind and asks the stuff lexicon
    for a new name).

    :raises InputError: no name, an unknown kind, or an existing class of the other kind.
    """
    assert session.result is not None
    text = normalize_name(name or "")
    if not text:
        raise InputError("Pick the class of the segment in the Class menu (or type a new name)")
    if kind not in CLASS_KINDS:
        raise InputError(f"the kind of a new class is one of {', '.join(CLASS_KINDS)}, got {kind!r}")
    vocab, cat = add_category(session.result.vocabulary, text, None if kind == "auto" else kind == "thing")
    return vocab, cat.id


def accept(app: DemoResources, session: Session, class_name: str, kind: str = "auto") -> None:
    """Make the proposed mask a segment of ``class_name`` (a new instance id for a thing; joins the
    class's segment for stuff; pixels taken from whatever held them)."""
    session.error = session.notice = ""
    _need_result(session)
    if session.candidate is None:
        raise InputError("No proposed mask: choose a prompt mode (point or box) and click on the image first")
    assert session.result is not None
    vocab, category_id = _category(session, class_name, kind)
    new, sid = add_segment(session.result, session.candidate, category_id, vocabulary=vocab)
    label = session.labels(new)[sid]
    session.push(f"add {label}", new)
    session.clear_prompt()
    session.selected = [sid]
    session.download = None
    session.notice = f"Added segment {sid} ({label}, {new.segment_by_id(sid).area} pixels)."


def _selected(session: Session, at_least: int = 1) -> list[int]:
    _need_result(session)
    if len(session.selected) < at_least:
        need = "a segment" if at_least == 1 else f"{at_least} or more segments"
        raise InputError(f"Select {need} first: click on it in the image (mode 'select segment') or in the table")
    return list(session.selected)


def relabel(app: DemoResources, session: Session, class_name: str, kind: str = "auto") -> None:
    """Give the selected segments the class ``class_name`` (picked or typed)."""
    session.error = session.notice = ""
    ids = _selected(session)
    assert session.result is not None
    vocab, category_id = _category(session, class_name, kind)
    result = session.result
    kept = []
    for sid in ids:
        result, now = relabel_segment(result, sid, category_id, vocabulary=vocab)
        kept.append(now)
    session.push(f"relabel {plural(len(ids), 'segment')} to {vocab.by_id(category_id).name}", result)
    session.selected = list(dict.fromkeys(kept))
    session.download = None
    session.notice = f"Relabelled {plural(len(ids), 'segment')} as {vocab.by_id(category_id).name}: {_named(session, session.selected)}."


def delete(app: DemoResources, session: Session) -> None:
    """Delete the selected segments (their pixels become void)."""
    session.error = session.notice = ""
    ids = _selected(session)
    assert session.result is not None
    named = _named(session, ids)
    result = session.result
    for sid in ids:
        result = delete_segment(result, sid)
    session.push(f"delete {plural(len(ids), 'segment')}", result)
    session.selected = []
    session.download = None
    session.notice = f"Deleted {plural(len(ids), 'segment')}: {named}."


def merge(app: DemoResources, session: Session) -> None:
    """Merge the selected segments (one class) into the first selected."""
    session.error = session.notice = ""
    ids = _selected(session, 2)
    assert session.result is not None
    named = _named(session, ids)
    result, sid = merge_segments(session.result, ids)
    session.push(f"merge {', '.join(map(str, ids))}", result)
    session.selected = [sid]
    session.download = None
    session.notice = f"Merged {named} into segment {sid}."


def undo(app: DemoResources, session: Session) -> None:
    """Undo the last correction (or the last prompt click when a prompt is being drawn)."""
    session.error = session.notice = ""
    if session.points or session.box_start is not None:
        session.clear_prompt()
        session.notice = "Prompt cleared."
        return
    if session.stale:
        raise InputError(f"The result is stale ({session.stale}); Undo works on the result shown")
    what = session.undo()
    session.download = None
    session.notice = f"Undone: {what}." if what else "Nothing to undo."


def select(session: Session, segment_id: int, several: bool = False) -> None:
    """A click on a table row: select that segment alone, or with ``several`` (the mode *select
    several*) add it to the selection or take it out."""
    session.error = session.notice = ""
    if session.result is None:
        return
    if segment_id not in {s.id for s in session.result.segments}:
        raise InputError(f"no segment {segment_id} in the current result")
    _choose(session, segment_id, several)


def _choose(session: Session, segment_id: int, several: bool) -> None:
    """Select ``segment_id`` alone (a click on a selected segment keeps it selected), or toggle it in
    a selection of several."""
    if not several:
        session.selected = [segment_id]
    elif segment_id in session.selected:
        session.selected.remove(segment_id)
    else:
        session.selected.append(segment_id)


def _named(session: Session, ids: Sequence[int]) -> str:
    """``"car #1 (id 1), sky (id 3)"``: segments by their labels and ids."""
    assert session.result is not None
    labels = session.labels()
    return ", ".join(f"{labels.get(i, '?')} (id {i})" for i in ids)


def set_images(app: DemoResources, session: Session, files: Sequence[Any]) -> None:
    """Several images uploaded together (or a folder's): the session walks them with :func:`step`,
    starting with the first; each image's result is kept while another is shown.

    :raises InputError: no file; :raises ImageReadError: the first file is not an image.
    """
    session.error = session.notice = ""
    paths = [f for f in files or () if f]
    if not paths:
        raise InputError("No images: choose several image files (or a folder's) to walk them with Previous and Next")
    session.images, session.position = list(paths), 0
    image_changed(app, session, session.images[0])


def step(app: DemoResources, session: Session, delta: int) -> None:
    """Show the next (``+1``) or previous (``-1``) image of the list; its kept result comes back.

    :raises InputError: no list of images.
    """
    session.error = session.notice = ""
    if not session.images:
        raise InputError("No images to walk: upload several images (or a folder) in the Images box first")
    target = session.position + delta
    if not 0 <= target < len(session.images):
        session.notice = "This is the first image." if target < 0 else "This is the last image."
        return
    session.position = target
    image_changed(app, session, session.images[target])


def position(session: Session) -> str:
    """``"image 2 of 3: room.jpg"`` (``(not segmented yet)`` when it has no result); ``""`` without a list."""
    if not session.images or session.image is None:
        return ""
    done = session.result is not None and not session.stale
    return f"image {session.position + 1} of {len(session.images)}: {session.image.name}{'' if done else ' (not segmented yet)'}"


def load_labels(app: DemoResources, session: Session, files: Sequence[Any]) -> None:
    """Continue correcting existing labels of the session's image: the demo's own zip, a
    COCO-panoptic ``panoptic.json`` with its PNG, or a Label Studio JSON export (the
    ``label-studio`` exporter's tasks, or a project export with the classes named in the current
    boxes). The labels of the image with the same name are loaded as the result (Undo goes back).

    :raises InputError: no image, no labels for it in the file, or labels of another size.
    :raises EvaluationError: the file is not a readable annotation file (the reader says why).
    """
    from ..formats import image_name
    from ..formats import read_annotations

    session.error = session.notice = ""
    if session.image is None:
        raise InputError("No image: upload the image first, then its labels")
    paths = [Path(f["path"] if isinstance(f, dict) else f) for f in files or () if f]
    if not paths:
        raise InputError("No labels file: choose the demo's zip, a panoptic.json with its PNG, or a Label Studio JSON export")
    folder = Path(tempfile.mkdtemp(prefix=".labels-", dir=app.session_dir(session).parent))
    try:
        for path in paths:
            if path.suffix.lower() == ".zip":
                with zipfile.ZipFile(path) as zf:
                    zf.extractall(folder)
            else:
                target = folder / ("panoptic" if path.suffix.lower() == ".png" else "") / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        candidates = [folder / "panoptic.json"] + sorted(folder.glob("*.json"))
        found = next((c for c in candidates if c.is_file() and c.name not in ("instances.json", "instances_results.json")), None)
        if found is None:
            raise InputError("No labels in what was given: choose the demo's zip, a panoptic.json with its PNG, or a Label Studio JSON export")
        fmt = "coco-panoptic" if found.name == "panoptic.json" else "auto"
        categories = None
        if session.result is not None:
            from ..formats import CategoryInfo

            categories = [CategoryInfo(c.id, c.name, c.isthing) for c in session.result.vocabulary]
        annotations = read_annotations(found, fmt, fallback=categories)
        # The image's own name, or the file-name-safe stem the demo's zip names it by.
        name = next((n for n in (image_name(session.image.name), session.image.stem) if n in annotations.names), None)
        if name is None:
            raise InputError(
                f"{found.name} has no labels for {session.image.name} (it has: {', '.join(annotations.names[:10]) or 'none'}): "
                "load the file made for this image"
            )
        annotated = annotations.read(name)
        result = _as_result(annotated, annotations.categories, session.image.rgb.shape[:2], found.name)
        kind = "COCO panoptic" if annotations.format == "coco-panoptic" else annotations.format.replace("-", " ").title()
        if session.result is not None and session.result_image != session.image.digest:
            session.keep()  # another image's work: kept for it
            session.history = []
        else:
            session.remember("load labels")  # Undo goes back to the result before the loading
        session.result, session.result_image, session.stale = result, session.image.digest, ""
        session.request = session.request or RunRequest()
        session.explanation = (f"labels loaded from {found.name} ({annotations.format})",)
        session.timings, session.cached, session.selected, session.numbers = {}, False, [], {}
        session.download = None
        session.notice = (
            f"Loaded {plural(len(result.segments), 'segment')} for {session.image.name} from the {kind} file {found.name}: "
            "correct them as usual."
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _as_result(annotated: Any, categories: Any, size: tuple[int, int], source: str) -> PanopticResult:
    """An annotation read by :mod:`ovpanoptic.evaluation` as a result for an image of ``size``."""
    from ..types import Category, Vocabulary

    panoptic_map = np.asarray(annotated.panoptic_map)
    if panoptic_map.shape != size:
        raise InputError(
            f"the labels in {source} are {panoptic_map.shape[1]} x {panoptic_map.shape[0]} pixels, the image "
            f"{size[1]} x {size[0]}: load the labels made for this image"
        )
    vocab = Vocabulary(tuple(Category(c.id, c.name, c.isthing) for c in categories.values()), name="loaded")
    labels = {int(s["id"]): (int(s["category_id"]), float(s.get("score", 1.0))) for s in annotated.segments}
    return PanopticResult.from_map(panoptic_map.astype(np.int32), labels, vocab, {})


def download(app: DemoResources, session: Session) -> Path | None:
    """The zip of the current result (written once per result; see :mod:`.downloads`)."""
    if session.result is None or session.image is None or session.request is None or session.stale:
        return None
    if session.download is not None and session.download.is_file():
        return session.download
    pipe = app.pipeline_for(session.request.preset, session.request.tuning)
    result = session.result
    rgb = session.image.rgb
    if rgb.shape[:2] != result.image_size:
        raise InputError("the result does not match the image: press Segment again")
    session.download = write_download(
        pipe, result, rgb, session.image.stem, app.session_dir(session), source=session.image.path, image_digest=session.image.digest,
        labels=session.labels(result),
    )
    return session.download
