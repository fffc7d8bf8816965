"""Built-in plugin: video trackers (``segment-video``).

``sam2-video``
    SAM 2.1's video predictor from the ``sam2`` package as shipped
    (``sam2.build_sam.build_sam2_video_predictor``; ``init_state``, ``add_new_mask`` for each seed,
    ``propagate_in_video``). Each keyframe window is one inference state: its frames are written as
    JPEGs to a temporary folder (the predictor's own loader reads them, resized to the model's
    1024 x 1024, and keeps them on the CPU), every seed becomes a mask prompt on the window's first
    frame, and propagation yields every object's mask on each later frame. The state is dropped at
    the end of the window, so memory does not grow with the video's length. Weights are the SAM 2.1
    checkpoints of the ``sam2`` proposal generator (``model``: a size, a file or hf-hub:...).
``flow`` (the default)
    No model, no weights: OpenCV's DIS dense optical flow (Kroeger et al., "Fast Optical Flow using
    Dense Inverse Search", ECCV 2016; ``cv2.DISOpticalFlow_create``) between consecutive frames.
    Every seed is painted into one label map on the keyframe. For each later frame, each object's
    motion since the previous frame, a similarity (shift, scale, rotation), is fitted by least
    squares to the forward flow of its *evidence* pixels: pixels well inside it (a 5 x 5
    neighbourhood of one label: DIS blurs motion over its 8 px patches at boundaries) whose flow
    passes the forward-backward consistency test of Sundaram, Brox and Keutzer (ECCV 2010,
    ``|f + b|² <= 0.01 (|f|² + |b|²) + 0.5``; pixels that fail it are occluded or uncovered), at
    most ``FIT_SAMPLES`` of them per object (a fixed pseudo-random subsample). The first fit uses
    only pixels whose flow is near the object's median flow (a neighbour's motion bleeding over the
    boundary cannot tilt it), the refit drops the pixels it misses by more than 1.5 px. The sums
    are per-label ``bincount`` calls and the keyframe's labelled pixels are moved by their object's
    *accumulated* motion (keyframe -> frame) in **one scatter of the whole label map** (a z-buffer,
    no sort): masks are never resampled frame after frame, and the cost per frame does not grow
    with the number of objects. The keyframe's labels are continued ``BORDER_MARGIN`` past the
    frame's edges (replicated), so an object the edge cuts comes in as the camera pans. Where two
    objects land on one pixel, the one whose motion agrees with the measured backward flow there
    is in front (the occluder); an object with too little consistent evidence (hidden, or a frame
    where DIS failed on it), or most of whose evidence jumped away from its last motion, keeps its
    last motion; a zoomed-in object's gaps are closed. Stuff is held from the keyframe by the track
    bookkeeping (``--track-stuff`` moves it too, as objects).
``hold``
    No model: every object keeps its keyframe mask until the next keyframe. With
    ``--keyframe-every 1`` this is per-frame segmentation whose ids follow by mask IoU between
    consecutive frames (a cheap CPU tracker for static cameras and slow scenes).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..components import ComponentContext, NoConfig, Progress, RegisterComponent
from ..device import autocast
from ..hookspecs import hookimpl
from ..types import TrackMasks
from ._quiet import require
from .sam2 import SIZES, Sam2Model, size_name

log = logging.getLogger(__name__)

__all__ = ["FlowConfig", "FlowTracker", "HoldTracker", "Sam2VideoConfig", "Sam2VideoTracker"]

#: DIS presets of ``flow`` (``cv2.DISOPTICAL_FLOW_PRESET_*``).
FLOW_PRESETS = ("ultrafast", "fast", "medium")
#: Forward-backward test of ``flow`` (Sundaram et al. 2010): occluded when
#: ``|f + b|² > FB_RELATIVE * (|f|² + |b|²) + FB_ABSOLUTE_PX2``.
FB_RELATIVE = 0.01
FB_ABSOLUTE_PX2 = 0.5


@dataclass(frozen=True)
class Sam2VideoConfig:
    """Options of ``sam2-video``.

    :param model: size (tiny, small, base_plus, large), a checkpoint path, or hf-hub:ORG/REPO/FILE.
    :param architecture: the size of a checkpoint given by path or hub id, when its name does not say.
    :param precision: ``float32``, or ``bfloat16`` (autocast of the whole propagation on CPUs with
        bf16 instructions and on CUDA; the device profile sets it).
    :param mask_threshold: logit threshold of a propagated mask.
    :param offload_state_to_cpu: keep the predictor's memory bank on the CPU (saves GPU memory, a
        little slower); frames are always kept on the CPU.
    :param jpeg_quality: quality of the window's frames handed to the predictor's JPEG loader (1..100).
    :param image_size: the side the predictor resizes frames to (a multiple of 64, 256..1024); 0 =
        the model's own (1024, what SAM 2.1 was trained at). 512 makes the image encoder about 4x and
        the memory attention (per object and frame) about 16x cheaper; how much it costs in mask
        quality depends on the objects' size: measure it on your clips (``eval-video``) first.
    """

    model: str = "tiny"
    architecture: str = ""
    precision: Literal["float32", "bfloat16"] = "float32"
    mask_threshold: float = 0.0
    offload_state_to_cpu: bool = False
    jpeg_quality: int = 95
    image_size: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be 'float32' or 'bfloat16', got {self.precision!r}")
        if not isinstance(self.mask_threshold, (int, float)) or not math.isfinite(self.mask_threshold):
            raise ValueError(f"mask_threshold must be a finite number, got {self.mask_threshold!r}")
        if isinstance(self.jpeg_quality, bool) or not isinstance(self.jpeg_quality, int) or not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be an integer in 1..100, got {self.jpeg_quality!r}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or (
            self.image_size and (self.image_size % 64 or not 256 <= self.image_size <= 1024)
        ):
            raise ValueError(f"image_size must be 0 (the model's 1024) or a multiple of 64 in 256..1024, got {self.image_size!r}")
        if self.architecture and size_name(self.architecture) is None:
            raise ValueError(f"architecture {self.architecture!r} is not one of {', '.join(SIZES)}")


class Sam2VideoTracker:
    """``sam2-video``: SAM 2.1's video predictor, one inference state per keyframe window."""

    def __init__(self, config: Sam2VideoConfig, context: ComponentContext | None = None) -> None:
        require("sam2", "the sam2-video tracker", "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0")
        self.config = config
        self.context = context or ComponentContext()
        self.loader = Sam2Model(config, self.context, video=True)

    def download(self) -> list[Path]:
        """Fetch the checkpoint (the same file as the ``sam2`` generator's)."""
        return [self.loader.checkpoint()]

    def track(self, frames: Sequence[np.ndarray], seeds: TrackMasks, *, progress: Progress | None = None) -> Iterator[TrackMasks]:
        """Propagate the seeds through ``frames[1:]`` (see the module docstring).

        The model runs under ``torch.inference_mode`` and the configured autocast around each step
        only: nothing of either stays switched on while this generator waits for its caller.
        """
        import torch
        from PIL import Image

        predictor = self.loader.get()
        device = self.context.device
        h, w = frames[0].shape[:2]

        def model_context() -> contextlib.ExitStack:
            stack = contextlib.ExitStack()
            stack.enter_context(torch.inference_mode())
            stack.enter_context(autocast(device, self.config.precision))
            stack.enter_context(_quiet_bars())
            return stack

        with tempfile.TemporaryDirectory(prefix="ovpanoptic-sam2-video-") as folder:
            for i, frame in enumerate(frames):
                Image.fromarray(np.asarray(frame)).save(Path(folder) / f"{i:05d}.jpg", quality=self.config.jpeg_quality)
            with model_context():
                state = predictor.init_state(folder, offload_video_to_cpu=True, offload_state_to_cpu=self.config.offload_state_to_cpu)
        try:
            with model_context():
                for track_id, mask in zip(seeds.ids.tolist(), seeds.masks, strict=True):
                    predictor.add_new_mask(state, frame_idx=0, obj_id=int(track_id), mask=torch.from_numpy(np.array(mask)))
                steps = predictor.propagate_in_video(state)
            done = 0
            while True:
                with model_context():
                    step = next(steps, None)
                    if step is None:
                        break
                    frame_idx, obj_ids, logits = step
                    masks = (logits[:, 0] > self.config.mask_threshold).cpu().numpy()
                if frame_idx == 0:
                    continue
                done += 1
                if progress is not None:
                    progress("sam2-video: propagation", done, len(frames) - 1)
                yield TrackMasks(np.asarray([int(i) for i in obj_ids], np.int64), masks.reshape(len(obj_ids), h, w))
        finally:
            predictor.reset_state(state)
            del state


@contextlib.contextmanager
def _quiet_bars() -> Iterator[None]:
    """The ``sam2`` package's own tqdm bars ("frame loading", "propagate in video") switched off
    while the predictor runs; they would write to stderr through the CLI's frame bar."""
    from unittest import mock

    import tqdm

    def silent(*args: Any, **kwargs: Any) -> Any:
        kwargs["disable"] = True
        return tqdm.tqdm(*args, **kwargs)

    with mock.patch("sam2.utils.misc.tqdm", silent), mock.patch("sam2.sam2_video_predictor.tqdm", silent), warnings.catch_warnings():
        # Without sam2's CUDA extension the predictor skips filling small holes (fill_hole_area) and
        # warns on every window; the masks are otherwise the same (sam2's INSTALL.md).
        warnings.filterwarnings("ignore", message=r"cannot import name '_C'", category=UserWarning)
        yield


@dataclass(frozen=True)
class FlowConfig:
    """Options of ``flow``.

    :param preset: DIS preset: ``ultrafast``, ``fast`` or ``medium`` (slower, finer flow).
    :param max_side: the flow is computed on frames downscaled so that their longer side is at most
        this (0: at the working size); the label map is always warped at the working size.
    :param occlusion_check: drop pixels that fail the forward-backward test (module docstring);
        off, every pixel follows the backward flow (half the flow computations).
    """

    preset: Literal["ultrafast", "fast", "medium"] = "medium"
    max_side: int = 640
    occlusion_check: bool = True

    def __post_init__(self) -> None:
        if self.preset not in FLOW_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(FLOW_PRESETS)}, got {self.preset!r}")
        if isinstance(self.max_side, bool) or not isinstance(self.max_side, int) or (self.max_side and self.max_side < 32):
            raise ValueError(f"max_side must be 0 (the working size) or an integer >= 32, got {self.max_side!r}")
        if not isinstance(self.occlusion_check, bool):
            raise ValueError(f"occlusion_check must be true or false, got {self.occlusion_check!r}")


class FlowTracker:
    """``flow``: seeds carried by DIS optical flow, all at once (module docstring)."""

    def __init__(self, config: FlowConfig, context: ComponentContext | None = None) -> None:
        require("cv2", "the flow tracker", "pip install opencv-python-headless")
        self.config = config

    def _dis(self) -> Any:
        import cv2

        preset = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                  "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[self.config.preset]
        return cv2.DISOpticalFlow_create(preset)

    def track(self, frames: Sequence[np.ndarray], seeds: TrackMasks, *, progress: Progress | None = None) -> Iterator[TrackMasks]:
        """Carry the seeds through ``frames[1:]`` (module docstring): per frame two flow fields, a
        handful of whole-map operations and one scatter of the keyframe's labelled pixels, whatever
        the number of seeds. Seeds that overlap: the later one owns the pixels."""
        import cv2

        h, w = frames[0].shape[:2]
        ids = np.asarray(seeds.ids, np.int64)
        n = len(ids)
        key = np.zeros((h, w), np.int32)  # seed i is label i + 1
        for i, mask in enumerate(seeds.masks):
            key[np.asarray(mask)] = i + 1
        # The keyframe's labels continued past the frame's edges (replicated, BORDER_MARGIN of the
        # longer side): an object the border cuts is carried into the frame as the camera pans.
        pad = max(1, round(BORDER_MARGIN * max(h, w)))
        padded = cv2.copyMakeBorder(key, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        ky, kx = np.nonzero(padded)
        kl = padded[ky, kx]
        kxy = np.stack([kx - pad, ky - pad]).astype(np.float64)  # the keyframe's labelled pixels
        codes = np.arange(1, n + 1, dtype=np.int32)[:, None, None]
        total = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (n + 1, 1, 1))  # keyframe -> current, per label
        step = total.copy()  # the last frame's motion, per label (kept for objects with no evidence)
        side = self.config.max_side
        scale = min(1.0, side / max(h, w)) if side else 1.0
        fh, fw = max(8, round(h * scale)), max(8, round(w * scale))
        dis = self._dis()
        kernel = np.ones((5, 5), np.uint8)
        # A fixed pseudo-random draw per pixel: each object's fit uses at most FIT_SAMPLES of its
        # evidence pixels, chosen by it (the same pixels on every run).
        draw = np.random.default_rng(0).random((h, w))

        def gray(image: np.ndarray) -> np.ndarray:
            g = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
            return g if (fh, fw) == (h, w) else cv2.resize(g, (fw, fh), interpolation=cv2.INTER_AREA)

        def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            f = dis.calc(a, b, None)
            return f if (fh, fw) == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(w / fw)

        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        labels = key
        previous = gray(frames[0])
        back = None
        for done, frame in enumerate(frames[1:], start=1):
            current = gray(frame)
            fwd = flow(previous, current)  # previous pixel p moved to p + fwd(p)
            # Evidence: pixels well inside a segment (a 5 x 5 neighbourhood of one label: DIS blurs
            # motion over its 8 px patches at boundaries) whose flow passes the forward-backward test.
            lab = labels.astype(np.float32)
            inner = (cv2.erode(lab, kernel) == cv2.dilate(lab, kernel)) & (labels > 0)
            sure = inner
            if self.config.occlusion_check:
                back = flow(current, previous)
                back_at = cv2.remap(back, gx + fwd[..., 0], gy + fwd[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                err = ((fwd + back_at) ** 2).sum(axis=2)
                sure = inner & (err <= FB_RELATIVE * ((fwd**2).sum(axis=2) + (back_at**2).sum(axis=2)) + FB_ABSOLUTE_PX2)
            step = _fit_similarity(labels, sure, inner, fwd, draw, n, step, follow=done > 1)
            before = total
            total = _compose(step, total)
            labels = _splat(kxy, kl, before, total, (h, w), back)
            previous = current
            if progress is not None:
                progress("flow: tracking", done, len(frames) - 1)
            yield TrackMasks(ids, labels[None] == codes)


#: Fewest evidence pixels for a segment's motion to be fitted (else its last motion is kept).
MIN_EVIDENCE = 12
#: Least share of a segment's inner pixels whose flow passes the forward-backward test for its
#: motion to be fitted: below it the flow there failed (a frame where DIS locked onto the
#: background, an object mostly hidden) and the segment keeps its last motion.
MIN_CONSISTENT = 0.3
#: Most evidence pixels per segment in a fit (a fixed pseudo-random subsample): the fits' cost
#: does not grow with the objects' size.
FIT_SAMPLES = 400
#: Residual (px) above which an evidence pixel is left out of the refit.
REFIT_PX = 1.5
#: Evidence pixels whose flow differs from their segment's median flow by more than this (px, plus
#: 25 % of the median's length) are left out of the first fit. From a window's second frame on, a
#: segment with less than half of its evidence within this of its last motion keeps its last
#: motion (objects move smoothly; flow that jumps is wrong, or belongs to something else).
FOLLOW_PX = 3.0
#: Largest change of scale (share) and rotation (radians) of a segment between two frames; a fit
#: beyond either is replaced by a shift.
MAX_STEP_SCALE = 0.05
MAX_STEP_ROTATION = 0.05
#: The replicated margin of the keyframe's labels around the frame, as a share of its longer side.
BORDER_MARGIN = 0.08


def _fit_similarity(
    labels: np.ndarray, sure: np.ndarray, inner: np.ndarray, fwd: np.ndarray, draw: np.ndarray, n: int, last: np.ndarray,
    follow: bool = False,
) -> np.ndarray:
    """Per label, the similarity transform (scale, rotation, shift) that best moves its evidence
    pixels ``p`` (``sure``) to ``p + fwd(p)``: least squares from per-label sums (one ``bincount``
    per sum, whatever the number of labels) over at most FIT_SAMPLES pixels per label (those with
    the lowest ``draw``): first on the pixels whose flow is near the label's median flow, then
    refitted without the pixels that fit misses by > REFIT_PX. ``follow``: a label with less than
    half of its pixels near ``last`` (FOLLOW_PX) keeps ``last``. Labels with fewer than
    MIN_EVIDENCE evidence pixels, or with less than MIN_CONSISTENT of their ``inner`` pixels as
    evidence, keep ``last``. Returns ``(n + 1, 2, 3)``."""
    ys, xs = np.nonzero(sure)
    lab = labels[ys, xs]
    count = np.bincount(lab, minlength=n + 1).astype(np.float64)
    # Keep each pixel with probability FIT_SAMPLES / count of its label (about FIT_SAMPLES each).
    pick = draw[ys, xs] * count[lab] < FIT_SAMPLES
    ys, xs, lab = ys[pick], xs[pick], lab[pick]
    px, py = xs.astype(np.float64), ys.astype(np.float64)
    qx, qy = px + fwd[ys, xs, 0], py + fwd[ys, xs, 1]

    def fit(keep: np.ndarray | None, prior: np.ndarray) -> np.ndarray:
        l, x, y, u, v = (lab, px, py, qx, qy) if keep is None else (lab[keep], px[keep], py[keep], qx[keep], qy[keep])

        def total(values: np.ndarray) -> np.ndarray:
            return np.bincount(l, weights=values, minlength=n + 1)

        c = np.bincount(l, minlength=n + 1).astype(np.float64)
        safe = np.maximum(c, 1.0)
        mpx, mpy, mqx, mqy = total(x) / safe, total(y) / safe, total(u) / safe, total(v) / safe
        spp = total(x * x + y * y) - c * (mpx * mpx + mpy * mpy)
        sa = total(x * u + y * v) - c * (mpx * mqx + mpy * mqy)
        sb = total(x * v - y * u) - c * (mpx * mqy - mpy * mqx)
        spread = spp > 1e-6 * np.maximum(c, 1.0)
        a = np.where(spread, sa / np.where(spread, spp, 1.0), 1.0)
        b = np.where(spread, sb / np.where(spread, spp, 1.0), 0.0)
        # A scale or rotation no object makes between two frames is flow converging on an
        # occlusion boundary: the segment is shifted only.
        wild = (np.abs(np.hypot(a, b) - 1.0) > MAX_STEP_SCALE) | (np.abs(np.arctan2(b, a)) > MAX_STEP_ROTATION)
        a, b = np.where(wild, 1.0, a), np.where(wild, 0.0, b)
        out = np.empty((n + 1, 2, 3))
        out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = a, -b, b, a
        out[:, 0, 2] = mqx - (a * mpx - b * mpy)
        out[:, 1, 2] = mqy - (b * mpx + a * mpy)
        return np.where((c >= MIN_EVIDENCE)[:, None, None], out, prior)

    def misses(model: np.ndarray) -> np.ndarray:
        m = model[lab]
        rx = m[:, 0, 0] * px + m[:, 0, 1] * py + m[:, 0, 2] - qx
        ry = m[:, 1, 0] * px + m[:, 1, 1] * py + m[:, 1, 2] - qy
        return rx * rx + ry * ry

    # The first fit only on pixels that move like most of their segment (within FOLLOW_PX plus 25 %
    # of the segment's median flow): flow of a neighbour bleeding into a segment cannot tilt it.
    fx, fy = qx - px, qy - py
    sampled = np.bincount(lab, minlength=n + 1)
    start = np.cumsum(sampled) - sampled
    middle = np.minimum(start + sampled // 2, max(len(lab) - 1, 0))
    mx = fx[np.lexsort((fx, lab))][middle] if len(lab) else np.zeros(n + 1)
    my = fy[np.lexsort((fy, lab))][middle] if len(lab) else np.zeros(n + 1)
    keep = (fx - mx[lab]) ** 2 + (fy - my[lab]) ** 2 <= (FOLLOW_PX + 0.25 * np.hypot(mx, my)[lab]) ** 2
    first = fit(keep, last)
    step = fit(misses(first) <= REFIT_PX**2, first) if len(lab) else first
    inner_count = np.bincount(labels[inner], minlength=n + 1)
    enough = (count >= MIN_EVIDENCE) & (count >= MIN_CONSISTENT * inner_count)
    if follow and len(lab):
        m = last[lab]
        moved = np.hypot(m[:, 0, 0] * px + m[:, 0, 1] * py + m[:, 0, 2] - px, m[:, 1, 0] * px + m[:, 1, 1] * py + m[:, 1, 2] - py)
        near = misses(last) <= (FOLLOW_PX + 0.25 * moved) ** 2
        share = np.bincount(lab, weights=near, minlength=n + 1) / np.maximum(sampled, 1)
        # Most of its evidence jumped away from its last motion: the flow failed there, or what the
        # label covers is now something else (it went behind an object the keyframe had not
        # seen whole): the segment keeps its last motion.
        enough &= share >= 0.5
    return np.where(enough[:, None, None], step, last)


def _compose(step: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Per label, ``step`` after ``total`` (2 x 3 affine transforms)."""
    lin = step[:, :, :2] @ total[:, :, :2]
    shift = (step[:, :, :2] @ total[:, :, 2:])[:, :, 0] + step[:, :, 2]
    return np.concatenate([lin, shift[:, :, None]], axis=2)


def _splat(
    kxy: np.ndarray, kl: np.ndarray, before: np.ndarray, total: np.ndarray, size: tuple[int, int], back: np.ndarray | None
) -> np.ndarray:
    """The keyframe's labelled pixels ``kxy`` (labels ``kl``) moved by their label's ``total``
    transform into one ``size`` label map. Where two labels land on one pixel, the one whose motion
    agrees best with the measured backward flow ``back`` there is in front (with no ``back``: the
    later label). Holes a growing (zoomed-in) segment leaves between its moved pixels are closed."""
    import cv2

    h, w = size
    a = total[kl]
    x = a[:, 0, 0] * kxy[0] + a[:, 0, 1] * kxy[1] + a[:, 0, 2]
    y = a[:, 1, 0] * kxy[0] + a[:, 1, 1] * kxy[1] + a[:, 1, 2]
    xi, yi = np.rint(x).astype(np.int64), np.rint(y).astype(np.int64)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    xi, yi, lab = xi[inside], yi[inside], kl[inside]
    if back is not None:
        b = before[lab]
        ox = b[:, 0, 0] * kxy[0][inside] + b[:, 0, 1] * kxy[1][inside] + b[:, 0, 2]
        oy = b[:, 1, 0] * kxy[0][inside] + b[:, 1, 1] * kxy[1][inside] + b[:, 1, 2]
        miss = (back[yi, xi, 0] - (ox - x[inside])) ** 2 + (back[yi, xi, 1] - (oy - y[inside])) ** 2
    else:
        miss = -lab.astype(np.float64)
    flat = yi * w + xi
    best = np.full(h * w, np.inf)
    np.minimum.at(best, flat, miss)  # per pixel, the best agreement (a z-buffer, no sort)
    front = miss <= best[flat]
    out = np.zeros(h * w, np.int32)
    out[flat[front]] = lab[front]
    out = out.reshape(h, w)
    occupied = (out > 0).astype(np.uint8)
    holes = (cv2.morphologyEx(occupied, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0) & (occupied == 0)
    if holes.any():
        out[holes] = cv2.dilate(out.astype(np.float32), np.ones((3, 3), np.uint8))[holes].astype(np.int32)
    return out


class HoldTracker:
    """``hold``: every object keeps its keyframe mask (no model)."""

    def __init__(self, config: NoConfig, context: ComponentContext | None = None) -> None:
        self.config = config

    def track(self, frames: Sequence[np.ndarray], seeds: TrackMasks, *, progress: Progress | None = None) -> Iterator[TrackMasks]:
        """Yield the seeds unchanged for each of ``frames[1:]``."""
        for _ in frames[1:]:
            yield seeds


@hookimpl
def register_trackers(register: RegisterComponent) -> None:
    """Register ``flow``, ``sam2-video`` and ``hold``."""
    register(
        "flow",
        FlowTracker,
        config=FlowConfig,
        description="DIS optical flow warps every object's mask at once, occlusions by forward-backward check (no model)",
    )
    register(
        "sam2-video",
        Sam2VideoTracker,
        config=Sam2VideoConfig,
        description="SAM 2.1 video predictor: keyframe segments propagated with memory (build_sam2_video_predictor)",
    )
    register("hold", HoldTracker, description="keeps each keyframe mask until the next keyframe (no model; IoU ids with --keyframe-every 1)")
