"""Built-in plugin: video trackers (``segment-video``).

``sam2-video`` (the default)
    SAM 2.1's video predictor from the ``sam2`` package as shipped
    (``sam2.build_sam.build_sam2_video_predictor``; ``init_state``, ``add_new_mask`` for each seed,
    ``propagate_in_video``). Each keyframe window is one inference state: its frames are written as
    JPEGs to a temporary folder (the predictor's own loader reads them, resized to the model's
    1024 x 1024, and keeps them on the CPU), every seed becomes a mask prompt on the window's first
    frame, and propagation yields every object's mask on each later frame. The state is dropped at
    the end of the window, so memory does not grow with the video's length. Weights are the SAM 2.1
    checkpoints of the ``sam2`` proposal generator (``model``: a size, a file or hf-hub:...).
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
from .sam2 import SIZES, Sam2Model, _size_name

log = logging.getLogger(__name__)

__all__ = ["HoldTracker", "Sam2VideoConfig", "Sam2VideoTracker"]


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
        if self.architecture and _size_name(self.architecture) is None:
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
    """Register ``sam2-video`` and ``hold``."""
    register(
        "sam2-video",
        Sam2VideoTracker,
        config=Sam2VideoConfig,
        description="SAM 2.1 video predictor: keyframe segments propagated with memory (build_sam2_video_predictor)",
    )
    register("hold", HoldTracker, description="keeps each keyframe mask until the next keyframe (no model; IoU ids with --keyframe-every 1)")
