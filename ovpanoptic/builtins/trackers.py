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
    Dense Inverse Search", ECCV 2016; ``cv2.DISOpticalFlow_create``) between consecutive frames,
    and layers: every seed is a layer, label 0 (whatever no seed covers) the background, which moves
    with the camera. For each later frame:

    1. Each layer's motion since the previous frame, a similarity (shift, scale, rotation), is
       fitted by least squares to the forward flow of its *evidence* pixels: pixels well inside it
       (a 5 x 5 neighbourhood of one label: DIS blurs motion over its 8 px patches at boundaries)
       whose flow passes the forward-backward consistency test of Sundaram, Brox and Keutzer (ECCV
       2010, ``|f + b|² <= 0.01 (|f|² + |b|²) + 0.5``), at most ``FIT_SAMPLES`` of them per layer
       (a fixed pseudo-random subsample); the first fit uses only pixels whose flow is near the
       layer's median flow, the refit drops the pixels it misses by more than 1.5 px.
    2. The motion is refined directly on the images (Lucas-Kanade on the similarity, Bergen et al.
       ECCV 1992; :func:`_refine_similarity`), starting from the cheapest of the flow's fit, the
       layer's last motion and the camera's: objects of uniform colour, whose flow DIS smooths
       over, are pinned by their outline.
    3. A layer with too little consistent evidence, less than ``MIN_VISIBLE`` of its pixels in
       front (it is going behind another), or most of whose evidence jumped away from its last
       motion, *coasts* on its last motion.
    4. The layers' pixels (the keyframe's, continued ``BORDER_MARGIN`` past the frame's edges, so an
       object the edge cuts comes in as the camera pans; plus what each gained) are moved by their
       *accumulated* motion (keyframe -> frame) in **one scatter** (a z-buffer, no sort): masks are
       never resampled frame after frame. Where two layers land on one pixel, the one whose motion
       agrees with the measured backward flow there is in front.
    5. Per-pixel motion assignment (:func:`_assign`): a pixel whose flow is trustworthy (textured,
       consistent) and contradicts the layer put there goes to the nearby layer whose motion
       explains it; an uncovered pixel so given to an object joins that layer for good.

    Every step is whole-map operations, per-label ``bincount`` sums and gathers of per-label
    transforms, with bounded samples: the cost per frame does not grow with the number of objects.
    Stuff is held from the keyframe by the track bookkeeping (``--track-stuff`` moves it too, as
    layers).
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

    #: Not run backward by default (``TrackingOptions.bidirectional``): its memory attention runs
    #: once per object and frame, so a second pass doubles what already dominates a run's cost.
    bidirectional = False

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

    #: Run backward from each next keyframe too, by default (``TrackingOptions.bidirectional``).
    bidirectional = True

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
        handful of whole-map operations and one scatter of the layers' pixels, whatever the number
        of seeds. Seeds that overlap: the later one owns the pixels."""
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
        kxy = np.stack([kx - pad, ky - pad]).astype(np.float64)  # every layer's pixels, in keyframe coordinates
        codes = np.arange(1, n + 1, dtype=np.int32)[:, None, None]
        # Label 0 is the background (whatever no seed covers): its motion is the camera's.
        total = np.tile(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), (n + 1, 1, 1))  # keyframe -> current, per label
        step = total.copy()  # the last frame's motion, per label (kept for layers with no evidence)
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

        def consistent(f: np.ndarray, g: np.ndarray) -> np.ndarray:
            """Pixels whose flow ``f`` is undone by the flow ``g`` back from where it lands."""
            g_at = cv2.remap(g, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            fx, fy, bx, by = f[..., 0], f[..., 1], g_at[..., 0], g_at[..., 1]
            err = (fx + bx) ** 2 + (fy + by) ** 2
            return err <= FB_RELATIVE * (fx * fx + fy * fy + bx * bx + by * by) + FB_ABSOLUTE_PX2

        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        labels = key
        present = np.bincount(key.ravel(), minlength=n + 1)  # per label, its pixels in the frame (front or not)
        previous = gray(frames[0])
        before_image = _Image.of(frames[0])
        for done, frame in enumerate(frames[1:], start=1):
            current = gray(frame)
            fwd = flow(previous, current)  # previous pixel p moved to p + fwd(p)
            # Evidence: pixels well inside a layer (a 5 x 5 neighbourhood of one label: DIS blurs
            # motion over its 8 px patches at boundaries) whose flow passes the forward-backward test.
            lab = labels.astype(np.float32)
            inner = cv2.erode(lab, kernel) == cv2.dilate(lab, kernel)
            sure = inner
            back = None
            if self.config.occlusion_check:
                back = flow(current, previous)
                sure = inner & consistent(fwd, back)
            last = step
            step, fitted = _fit_similarity(labels, sure, inner, fwd, draw, n, step, follow=done > 1)
            # A layer mostly hidden on the previous frame (less than MIN_VISIBLE of its moved pixels
            # in front) coasts on its last motion: what little shows of it is mostly its edge, or
            # pixels that are not its own.
            visible = np.bincount(labels.ravel(), minlength=n + 1)
            hidden = visible < MIN_VISIBLE * present
            hidden[0] = False
            step = np.where(hidden[:, None, None], last, step)
            fitted &= ~hidden
            image = _Image.of(frame)
            camera = np.broadcast_to(step[:1], step.shape)
            step = _refine_similarity(labels, fitted, (step, last, camera), before_image, image, draw, n)
            before_image = image
            before = total
            total = _compose(step, total)
            front, behind, present = _splat(kxy, kl, before, total, (h, w), back)
            if back is not None:
                textured = _texture(image.levels[1][0]) >= TEXTURE_MIN
                labels, gained = _assign(front, behind, step, back, consistent(back, fwd), textured)
                if len(gained[0]):
                    # Pixels a layer gained (uncovered, they move with it) join it for good: mapped
                    # back to keyframe coordinates by the inverse of its motion so far.
                    gl = labels[gained]
                    inv = _invert(total)[gl]
                    x, y = gained[1].astype(np.float64), gained[0].astype(np.float64)
                    kxy = np.concatenate(
                        [kxy, np.stack([inv[:, 0, 0] * x + inv[:, 0, 1] * y + inv[:, 0, 2], inv[:, 1, 0] * x + inv[:, 1, 1] * y + inv[:, 1, 2]])],
                        axis=1,
                    )
                    kl = np.concatenate([kl, gl])
            else:
                labels = front
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
#: Least share of a layer's pixels in the frame that must be in front (visible) for its motion to
#: be fitted; below it the layer keeps its last motion (it is going behind another).
MIN_VISIBLE = 0.3
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
) -> tuple[np.ndarray, np.ndarray]:
    """Per label, the similarity transform (scale, rotation, shift) that best moves its evidence
    pixels ``p`` (``sure``) to ``p + fwd(p)``: least squares from per-label sums (one ``bincount``
    per sum, whatever the number of labels) over at most FIT_SAMPLES pixels per label (those with
    the lowest ``draw``): first on the pixels whose flow is near the label's median flow, then
    refitted without the pixels that fit misses by > REFIT_PX. ``follow``: a label with less than
    half of its pixels near ``last`` (FOLLOW_PX) keeps ``last``. Labels with fewer than
    MIN_EVIDENCE evidence pixels, or with less than MIN_CONSISTENT of their ``inner`` pixels as
    evidence, keep ``last``. Returns the ``(n + 1, 2, 3)`` transforms and which labels were fitted."""
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
    return np.where(enough[:, None, None], step, last), enough


#: Most pixels per layer in the direct (photometric) refinement of its motion.
REFINE_SAMPLES = 1500
#: Most pixels of all layers together in the refinement.
REFINE_BUDGET = 6000
#: Gauss-Newton iterations of the refinement at each of its two smoothing levels.
REFINE_ITERATIONS = 3
#: Largest correction (px, plus 25 % of the motion) the refinement may make to a layer's motion.
REFINE_PX = 4.0
#: Share of each layer's pixels (the best-matching ones) that the refinement and its costs use:
#: the rest may be hidden in the next frame.
REFINE_KEEP = 2 / 3


@dataclass(frozen=True)
class _Image:
    """A frame as the direct motion refinement reads it: grey, Gaussian-smoothed at two scales
    (sigma 1 and 3 px: the coarse one widens the refinement's reach), with their gradients."""

    levels: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]

    @classmethod
    def of(cls, frame: np.ndarray) -> _Image:
        import cv2

        g = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
        levels = []
        for sigma in (3.0, 1.0):
            s = cv2.GaussianBlur(g, (0, 0), sigma)
            levels.append((s, cv2.Sobel(s, cv2.CV_32F, 1, 0, ksize=3, scale=0.125), cv2.Sobel(s, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)))
        return cls(tuple(levels))


def _refine_similarity(
    labels: np.ndarray, fitted: np.ndarray, hypotheses: Sequence[np.ndarray], before: _Image, after: _Image, draw: np.ndarray, n: int
) -> np.ndarray:
    """Each fitted label's motion chosen and refined directly on the images (Lucas-Kanade on a
    parametric motion, Bergen et al., ECCV 1992). Over at most REFINE_SAMPLES of the label's
    pixels in ``before`` (its edge included: an object of uniform colour is pinned by its outline,
    where the flow is smoothed over), the cost of a motion ``S`` is the mean of the best
    REFINE_KEEP of ``|after(S p) - before(p)|`` (the rest may be hidden in ``after``). The label
    starts from the cheapest of ``hypotheses`` (the flow's fit first; its last motion; the
    camera's), then Gauss-Newton steps on the same pixels, coarse then fine, move it; the result
    is kept where it costs less than the start and stays within REFINE_PX of it. All labels'
    normal equations are ``bincount`` sums, solved in one batch. Returns ``(n + 1, 2, 3)``."""
    step = hypotheses[0]
    ys, xs = np.nonzero(fitted[labels])
    if not len(ys):
        return step
    lab = labels[ys, xs]
    count = np.bincount(lab, minlength=n + 1).astype(np.float64)
    # At most REFINE_SAMPLES pixels per label and REFINE_BUDGET in all: the cost is bounded
    # whatever the number of layers.
    per_label = min(REFINE_SAMPLES, REFINE_BUDGET / max(int(np.count_nonzero(count)), 1))
    pick = draw[ys, xs] * count[lab] < per_label
    ys, xs, lab = ys[pick], xs[pick], lab[pick]
    order0 = np.argsort(lab, kind="stable")
    ys, xs, lab = ys[order0], xs[order0], lab[order0]
    count = np.bincount(lab, minlength=n + 1).astype(np.float64)
    first = (np.cumsum(count) - count).astype(np.int64)
    safe = np.maximum(count, 1.0)
    px, py = xs.astype(np.float64), ys.astype(np.float64)
    cx, cy = np.bincount(lab, px, n + 1) / safe, np.bincount(lab, py, n + 1) / safe
    u, v = px - cx[lab], py - cy[lab]  # centred per label (conditioning)
    h, w = labels.shape

    def params(m: np.ndarray) -> np.ndarray:
        """``(a, b, tx, ty)`` of ``q = [[a, -b], [b, a]] (p - c) + c + t`` (the similarity part)."""
        return np.stack([m[:, 0, 0], m[:, 1, 0], m[:, 0, 0] * cx + m[:, 0, 1] * cy + m[:, 0, 2] - cx,
                         m[:, 1, 0] * cx + m[:, 1, 1] * cy + m[:, 1, 2] - cy], axis=1)

    def warp(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, tx, ty = (t[lab, i] for i in range(4))
        return a * u - b * v + cx[lab] + tx, b * u + a * v + cy[lab] + ty

    def residuals(t: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Residuals, whether each is among its label's best REFINE_KEEP, and the warped points."""
        qx, qy = warp(t)
        gray = after.levels[level][0]
        r = _sample(gray, qx, qy) - before.levels[level][0][ys, xs]
        outside = (qx < 0) | (qx > w - 1.001) | (qy < 0) | (qy > h - 1.001)
        score = np.where(outside, np.inf, np.abs(r))
        order = np.lexsort((score, lab))
        rank = np.empty(len(r), np.int64)
        rank[order] = np.arange(len(r)) - first[lab[order]]
        keep = ~outside & (rank < np.floor(REFINE_KEEP * count[lab]))
        return r, keep, qx, qy

    def cost(t: np.ndarray) -> np.ndarray:
        r, keep, _, _ = residuals(t, 1)
        kept = np.bincount(lab, keep, n + 1)
        return np.where(kept > 0, np.bincount(lab, np.abs(r) * keep, n + 1) / np.maximum(kept, 1.0), np.inf)

    starts = [params(m) for m in hypotheses]
    costs = np.stack([cost(t) for t in starts])
    best = np.argmin(costs, axis=0)
    t0 = np.stack(starts)[best, np.arange(n + 1)]
    c0 = costs[best, np.arange(n + 1)]
    t = t0.copy()
    for level in (0, 1):
        grad_x, grad_y = after.levels[level][1], after.levels[level][2]
        for _ in range(REFINE_ITERATIONS):
            r, keep, qx, qy = residuals(t, level)
            gx = _sample(grad_x, qx, qy)
            gy = _sample(grad_y, qx, qy)
            j = np.stack([gx * u + gy * v, -gx * v + gy * u, gx, gy], axis=1) * keep[:, None]
            hess = np.zeros((n + 1, 4, 4))
            grad = np.zeros((n + 1, 4))
            for i in range(4):
                grad[:, i] = np.bincount(lab, j[:, i] * r, n + 1)
                for k in range(i, 4):
                    hess[:, i, k] = hess[:, k, i] = np.bincount(lab, j[:, i] * j[:, k], n + 1)
            ok = fitted & (count >= MIN_EVIDENCE) & (np.linalg.det(hess) > 1e-9)
            hess[~ok] = np.eye(4)
            grad[~ok] = 0.0
            t = t + np.linalg.solve(hess, -grad[..., None])[..., 0]
    a, b = t[:, 0], t[:, 1]
    near = np.hypot(t[:, 2] - t0[:, 2], t[:, 3] - t0[:, 3]) <= REFINE_PX + 0.25 * np.hypot(t0[:, 2], t0[:, 3])
    plausible = (np.abs(np.hypot(a, b) - 1.0) <= MAX_STEP_SCALE) & (np.abs(np.arctan2(b, a)) <= MAX_STEP_ROTATION)
    t = np.where((near & plausible & (cost(t) < c0))[:, None], t, t0)
    a, b, tx, ty = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
    out = np.empty_like(step)
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1] = a, -b, b, a
    out[:, 0, 2] = cx + tx - (a * cx - b * cy)
    out[:, 1, 2] = cy + ty - (b * cx + a * cy)
    return np.where(fitted[:, None, None], out, step)


def _compose(step: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Per label, ``step`` after ``total`` (2 x 3 affine transforms)."""
    lin = step[:, :, :2] @ total[:, :, :2]
    shift = (step[:, :, :2] @ total[:, :, 2:])[:, :, 0] + step[:, :, 2]
    return np.concatenate([lin, shift[:, :, None]], axis=2)


def _invert(model: np.ndarray) -> np.ndarray:
    """Per label, the inverse of a ``(L, 2, 3)`` affine transform."""
    lin = np.linalg.inv(model[:, :, :2])
    return np.concatenate([lin, -(lin @ model[:, :, 2:])], axis=2)


def _splat(
    kxy: np.ndarray, kl: np.ndarray, before: np.ndarray, total: np.ndarray, size: tuple[int, int], back: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The layers' pixels ``kxy`` (keyframe coordinates, labels ``kl``) moved by their label's
    ``total`` transform into ``size`` label maps: the front layer and the one right behind it
    (0: none). Where two labels land on one pixel, the one whose motion (``before`` -> ``total``)
    agrees best with the measured backward flow ``back`` there is in front (with no ``back``: the
    later label): a z-buffer, no sort. Holes a growing (zoomed-in) layer leaves between its moved
    pixels are closed in the front map. Also returns, per label, how many pixels it covers in the
    frame, hidden ones included."""
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
    np.minimum.at(best, flat, miss)  # per pixel, the best agreement
    front = miss <= best[flat]
    out = np.zeros(h * w, np.int32)
    out[flat[front]] = lab[front]
    rest = ~front & (lab != out[flat])
    second = np.full(h * w, np.inf)
    np.minimum.at(second, flat[rest], miss[rest])
    behind = np.zeros(h * w, np.int32)
    take = rest & (miss <= second[flat])
    behind[flat[take]] = lab[take]
    out = out.reshape(h, w)
    occupied = (out > 0).astype(np.uint8)
    holes = (cv2.morphologyEx(occupied, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)) > 0) & (occupied == 0)
    if holes.any():
        out[holes] = cv2.dilate(out.astype(np.float32), np.ones((3, 3), np.uint8))[holes].astype(np.int32)
    # Per label, its pixels in the frame, hidden ones included (moved pixels times its area scale).
    present = np.bincount(lab, minlength=len(total)) * np.abs(np.linalg.det(total[:, :, :2]))
    return out, behind.reshape(h, w), present


#: Radius (px) around a layer within which pixels it does not cover may join it (uncovered parts
#: of an object come into view next to what is seen of it).
NEAR_PX = 16
#: A pixel's flow is *explained* by a layer's motion when they differ by at most ASSIGN_PX plus
#: ASSIGN_SHARE of the motion's length (it *contradicts* it beyond FOLLOW_PX plus 25 %).
ASSIGN_PX = 1.0
ASSIGN_SHARE = 0.1
#: Least texture (the smaller eigenvalue of the 7 x 7 structure tensor of the grey image, in grey
#: levels² per pixel²) for a pixel's flow to decide its layer: in flatter regions DIS fills the
#: flow in from around (smoothly wrong inside an object of uniform colour, even where it passes
#: the forward-backward test).
TEXTURE_MIN = 20.0


def _texture(gray: np.ndarray) -> np.ndarray:
    """The smaller eigenvalue of the 7 x 7 structure tensor of a grey image (Shi and Tomasi
    1994: where it is small, local motion is ambiguous)."""
    import cv2

    ix = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    iy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    a, c, b = (cv2.boxFilter(m, -1, (7, 7)) for m in (ix * ix, iy * iy, ix * iy))
    return (a + c) / 2 - np.sqrt(((a - c) / 2) ** 2 + b * b)


def _sample(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of an ``(H, W)`` float image at float positions (clamped to the image)."""
    h, w = image.shape[:2]
    x = np.clip(x, 0, w - 1.001)
    y = np.clip(y, 0, h - 1.001)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)
    fx, fy = x - x0, y - y0
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _assign(
    front: np.ndarray, behind: np.ndarray, step: np.ndarray, back: np.ndarray, reliable: np.ndarray, textured: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Per-pixel motion assignment (layered motion segmentation, Wang and Adelson 1994). A pixel
    near a layer whose backward flow is trustworthy (``reliable``: it passes the forward-backward
    test; ``textured``: enough texture for the flow to be its own) and contradicts the motion
    ``step`` of the layer the scatter put there (``front``; 0 = the background, which moves with
    the camera) goes to the candidate layer whose motion explains its flow best, if one does: the
    one behind it, the background, or the highest or lowest label within NEAR_PX (in front or
    behind). This gives the uncovered parts of an object to it (they move with it), corrects depth
    where the scatter got it wrong, and drops pixels that move like the background rather than the
    layer. Whole-map operations and gathers of per-label transforms only: the cost does not grow
    with the number of layers.

    :return: the new front map, and the ``(ys, xs)`` of pixels now given to a thing that the
        scatter did not put there.
    """
    import cv2

    inv = _invert(step)
    labels = front.copy()
    kernel = np.ones((2 * NEAR_PX + 1, 2 * NEAR_PX + 1), np.uint8)
    anything = ((front > 0) | (behind > 0)).astype(np.uint8)
    ys, xs = np.nonzero((cv2.dilate(anything, kernel) > 0) & reliable & textured)
    x, y = xs.astype(np.float64), ys.astype(np.float64)

    def moved(lab: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each pixel came from under its layer's motion, as a displacement."""
        m = inv[lab]
        return m[..., 0, 0] * x + m[..., 0, 1] * y + m[..., 0, 2] - x, m[..., 1, 0] * x + m[..., 1, 1] * y + m[..., 1, 2] - y

    bx, by = back[ys, xs, 0].astype(np.float64), back[ys, xs, 1].astype(np.float64)
    dx, dy = moved(front[ys, xs], x, y)
    doubt = np.hypot(dx - bx, dy - by) > FOLLOW_PX + 0.25 * np.hypot(dx, dy)
    ys, xs, x, y, bx, by = ys[doubt], xs[doubt], x[doubt], y[doubt], bx[doubt], by[doubt]
    if not len(ys):
        return labels, (ys, xs)
    big = float(max(int(step.shape[0]), 1))
    near = []
    for layer in (front, behind):
        f = layer.astype(np.float32)
        near.append(cv2.dilate(f, kernel))  # the highest label within NEAR_PX
        low = cv2.dilate(np.where(layer > 0, big - f, 0).astype(np.float32), kernel)
        near.append(np.where(low > 0, big - low, 0))  # the lowest
    cands = np.stack([behind[ys, xs], np.zeros_like(ys, dtype=np.int32)] + [m[ys, xs].astype(np.int32) for m in near], axis=1)
    dx, dy = moved(cands, x[:, None], y[:, None])
    err = np.hypot(dx - bx[:, None], dy - by[:, None])
    pick = np.argmin(err, axis=1)
    rows = np.arange(len(ys))
    fits = err[rows, pick] <= ASSIGN_PX + ASSIGN_SHARE * np.hypot(dx, dy)[rows, pick]
    new = cands[rows, pick]
    ys, xs, new = ys[fits], xs[fits], new[fits]
    labels[ys, xs] = new
    gained = (new > 0) & (new != front[ys, xs])
    return labels, (ys[gained], xs[gained])


class HoldTracker:
    """``hold``: every object keeps its keyframe mask (no model)."""

    #: Never run backward by default (``TrackingOptions.bidirectional``): ``hold`` is "each keyframe's
    #: masks until the next keyframe".
    bidirectional = False

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
