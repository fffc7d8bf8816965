"""Built-in plugin: class-agnostic mask proposals with SAM 2.1 (the real ``sam2`` package).

Two proposal generators share one config and one model loader:

``sam2`` (fast, the default)
    Ours, on the same model: the image is embedded once with ``SAM2ImagePredictor``; grid point
    prompts go through the model's prompt encoder and a throughput-oriented evaluation of its mask
    decoder (:mod:`.sam2_decoder`); predicted IoU is checked *before* any mask is built, stability
    on the 256x256 low-resolution logits, box NMS (torchvision) on boxes derived from them, and
    only the survivors are upsampled to full resolution. ``adaptive = true`` also skips grid points
    already covered by accepted masks.
``sam2-stock``
    ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator`` as shipped: the reference.

Weights: ``model`` is a size (``tiny``, ``small``, ``base_plus``, ``large``: the official
``facebook/sam2.1-hiera-*`` checkpoints from the Hugging Face hub), a local checkpoint, or
``hf-hub:ORG/REPO/FILE``. ``ovpanoptic download sam2 --size SIZE`` fetches ahead of time.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..components import ComponentContext, Progress, RegisterComponent
from ..device import autocast
from ..errors import InputError, MissingDependencyError, WeightsError
from ..hookspecs import hookimpl
from ..imageio import image_digest
from ..threads import many_small_ops
from ..types import Prompt, ProposalSet
from ..weights import HUB_PREFIX, HubFile, load_state_dict, load_strict, resolve_weights
from ._quiet import quiet_deprecations

log = logging.getLogger(__name__)

#: size -> (hydra config of the sam2 package, Hugging Face checkpoint)
SIZES: dict[str, tuple[str, HubFile]] = {
    "tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", HubFile("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt")),
    "small": ("configs/sam2.1/sam2.1_hiera_s.yaml", HubFile("facebook/sam2.1-hiera-small", "sam2.1_hiera_small.pt")),
    "base_plus": (
        "configs/sam2.1/sam2.1_hiera_b+.yaml",
        HubFile("facebook/sam2.1-hiera-base-plus", "sam2.1_hiera_base_plus.pt"),
    ),
    "large": ("configs/sam2.1/sam2.1_hiera_l.yaml", HubFile("facebook/sam2.1-hiera-large", "sam2.1_hiera_large.pt")),
}
_SIZE_ALIASES = {"t": "tiny", "s": "small", "b+": "base_plus", "base-plus": "base_plus", "l": "large"}

#: Smallest image side accepted (SAM 2 resizes every image to 1024x1024).
MIN_SIDE = 32

#: Image embeddings a generator keeps for :meth:`~_Sam2Base.segment_prompt` (the last images
#: prompted or segmented; ~16 MB each for hiera-tiny).
EMBEDDINGS_KEPT = 2


def _finite(name: str, value: float, lo: float | None = None, hi: float | None = None) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")


@dataclass(frozen=True)
class Sam2Config:
    """Options shared by ``sam2`` and ``sam2-stock`` (names follow SAM2AutomaticMaskGenerator).

    :param model: size (tiny, small, base_plus, large), a checkpoint path, or hf-hub:ORG/REPO/FILE.
    :param architecture: the size of a checkpoint given by path or hub id, when its file name
        does not say (``sam2.1_hiera_small.pt`` does).
    :param points_per_side: the prompt grid is points_per_side x points_per_side.
    :param points_per_batch: prompts decoded together.
    :param pred_iou_thresh: keep masks whose predicted IoU is above this (0 = keep all).
    :param stability_score_thresh: keep masks at least this stable (0 = keep all).
    :param stability_score_offset: logit offset of the stability score.
    :param mask_threshold: logit threshold of a mask.
    :param box_nms_thresh: box IoU above which the lower-scoring mask is dropped.
    :param crop_n_layers: extra layers of overlapping image crops (0 = whole image only).
    :param crop_nms_thresh: box NMS threshold between crops.
    :param crop_overlap_ratio: overlap of neighbouring crops.
    :param crop_n_points_downscale_factor: points per side shrink by this per crop layer.
    :param multimask_output: three masks per point (SAM's default for ambiguous clicks).
    :param min_area: drop final masks smaller than this many pixels.
    :param max_proposals: keep at most this many masks, best predicted IoU first (0 = no limit).
    """

    model: str = "tiny"
    architecture: str = ""
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    multimask_output: bool = True
    min_area: int = 0
    max_proposals: int = 0

    def __post_init__(self) -> None:
        if self.points_per_side < 1:
            raise ValueError(f"points_per_side must be >= 1 (a grid of at least one point), got {self.points_per_side}")
        if self.points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {self.points_per_batch}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh", "crop_overlap_ratio"):
            _finite(name, getattr(self, name), 0.0, 1.0)
        _finite("stability_score_offset", self.stability_score_offset, 0.0)
        _finite("mask_threshold", self.mask_threshold)
        if self.crop_n_layers < 0 or self.crop_n_points_downscale_factor < 1:
            raise ValueError("crop_n_layers must be >= 0 and crop_n_points_downscale_factor >= 1")
        if self.min_area < 0 or self.max_proposals < 0:
            raise ValueError("min_area and max_proposals must be >= 0")
        if self.architecture and size_name(self.architecture) is None:
            raise ValueError(f"architecture {self.architecture!r} is not one of {', '.join(SIZES)}")


@dataclass(frozen=True)
class Sam2FastConfig(Sam2Config):
    """Options of the fast ``sam2`` generator (all of :class:`Sam2Config`, plus):

    :param adaptive: skip grid points that fall inside masks accepted from earlier batches.
    :param decoder_batch: prompts decoded at once; small batches keep the per-prompt tensors
        (4096 x 256 image keys, 256 x 256 x 32 upscaled features) in the CPU's cache: 4 is ~1.4x
        faster per prompt than 16 on a 2-core CPU, and bounds memory.
    :param precision: ``float32`` computes SAM 2 exactly; ``bfloat16`` runs the image encoder
        under ``torch.autocast`` and the mask decoder in bf16 (on a 2-core avx512_bf16 CPU: encoder
        1.5x, decoder 1.8x faster; on CUDA GPUs the tensor cores' type). On CPUs without bf16
        instructions it is emulated and much slower: the device profiles (``configs/devices/``)
        choose it only where it is native. Logits differ from float32 by ~1e-2.
    """

    adaptive: bool = False
    decoder_batch: int = 4
    precision: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.decoder_batch < 1:
            raise ValueError(f"decoder_batch must be >= 1, got {self.decoder_batch}")


def size_name(text: str) -> str | None:
    """The SAM 2 size (a key of :data:`SIZES`) a name or alias spells (``"L"``, ``"large"``, ...), or ``None``."""
    key = text.strip().lower()
    key = _SIZE_ALIASES.get(key, key)
    return key if key in SIZES else None


def _architecture_of(config: Sam2Config) -> str:
    """The SAM 2 size: ``architecture`` when set, else ``model`` when it is a size, else guessed
    from a checkpoint's file name.

    :raises WeightsError: a checkpoint path that does not exist, a name that is neither a size nor a
        path nor a hub id, or a checkpoint whose name does not say its size.
    """
    if config.architecture:
        return size_name(config.architecture) or config.architecture
    size = size_name(config.model)
    if size is not None:
        return size
    text = config.model.strip()
    path = Path(text).expanduser()
    is_hub = text.startswith(HUB_PREFIX)
    if not is_hub and not path.exists():
        if path.suffix or os.sep in text:
            raise WeightsError(
                f"SAM 2 checkpoint not found: {path} does not exist. Pass an existing checkpoint file, a size "
                f"({', '.join(SIZES)}: downloaded on first use), or hf-hub:ORG/REPO/FILE"
            )
        close = difflib.get_close_matches(text.lower(), list(SIZES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise WeightsError(
            f"unknown SAM 2 model {text!r}{hint}: use a size ({', '.join(SIZES)}), a checkpoint path, or "
            "hf-hub:ORG/REPO/FILE"
        )
    name = Path(config.model).name.lower().replace("-", "_")
    for size in ("base_plus", "large", "small", "tiny"):
        if size in name:
            return size
    raise WeightsError(
        f"cannot tell the SAM 2 size of {config.model!r} from its name: set "
        f"--set proposal_generator.sam2.architecture=tiny|small|base_plus|large (for the video tracker: "
        f"--set tracker.sam2-video.architecture=...)"
    )


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(
            f"SAM 2 needs an (H, W, 3) uint8 RGB image, got {getattr(image, 'shape', None)} "
            f"{getattr(image, 'dtype', type(image).__name__)}; use ovpanoptic.imageio.as_rgb_array"
        )
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"the image is {w}x{h} pixels; SAM 2 needs at least {MIN_SIDE} px per side: upscale it first")


class Sam2Model:
    """Loads (once, on first use) the SAM 2.1 model a config names.

    :param config: any config with ``model`` and ``architecture`` (:class:`Sam2Config`, the video
        tracker's config).
    :param video: build ``sam2.sam2_video_predictor.SAM2VideoPredictor`` (the package's own
        ``build_sam2_video_predictor``, with its default post-processing options, and the config's
        ``image_size`` when it sets one) instead of the image model; both load the same checkpoint.
    """

    def __init__(self, config: Any, context: ComponentContext, *, video: bool = False) -> None:
        self.config = config
        self.context = context
        self.video = video
        self._model: Any = None
        self._size = _architecture_of(config)

    @property
    def fix(self) -> str:
        """The command that fetches the configured weights."""
        if size_name(self.config.model):
            return f"ovpanoptic download sam2 --size {self._size}"  # the video predictor uses the same file
        return f"ovpanoptic download sam2 --model {self.config.model}"

    def checkpoint(self) -> Path:
        """Resolve the checkpoint file (downloading into the hub cache unless offline)."""
        size = size_name(self.config.model)
        known = {size: SIZES[size][1]} if size else {}
        return resolve_weights(
            size or self.config.model,
            what=f"SAM 2.1 hiera {self._size} checkpoint",
            known=known,
            default_filename=SIZES[self._size][1].filename,
            fix=self.fix,
            offline=self.context.offline,
        )

    def get(self) -> Any:
        """The model in eval mode on the context's device."""
        if self._model is None:
            try:
                import torch
                from sam2.build_sam import build_sam2, build_sam2_video_predictor
            except ImportError as exc:
                raise MissingDependencyError(
                    f"the SAM 2 generators need torch and sam2 ({exc}); run scripts/bootstrap.sh or "
                    "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0"
                ) from None
            path = self.checkpoint()
            what = f"SAM 2.1 hiera {self._size} checkpoint"
            state = load_state_dict(path, what=what, fix=self.fix, key="model")
            if self.video:
                size = int(getattr(self.config, "image_size", 0) or 0)
                extra = [f"++model.image_size={size}"] if size else []
                model = build_sam2_video_predictor(SIZES[self._size][0], ckpt_path=None, device="cpu", mode="eval", hydra_overrides_extra=extra)
            else:
                model = build_sam2(SIZES[self._size][0], ckpt_path=None, device="cpu", mode="eval")
            load_strict(model, state, what=what, path=path, fix=self.fix)
            self._model = model.to(torch.device(self.context.device)).eval()
            log.info("loaded %s from %s on %s", what, path, self.context.device)
        return self._model


def _float32_features(features: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    """A ``SAM2ImagePredictor``'s image features in float32 (the decoders cast them to their own
    type); with ``index``, that image's own copy out of a batch's (so the batch's tensors can go)."""

    def own(t: Any) -> Any:
        return t.float() if index is None else t[index : index + 1].float().clone()

    return {"image_embed": own(features["image_embed"]), "high_res_feats": [own(f) for f in features["high_res_feats"]]}


class _Sam2Base:
    """Shared parts of the two generators: loading, input checks, the per-image cache, and prompt
    segmentation (:meth:`segment_prompt`) from kept image embeddings."""

    config: Sam2Config

    def __init__(self, config: Sam2Config, context: ComponentContext | None = None) -> None:
        self.config = config
        self.context = context or ComponentContext()
        self.loader = Sam2Model(config, self.context)
        self._cache: OrderedDict[str, ProposalSet] = OrderedDict()
        # image digest -> SAM2ImagePredictor with that image set (its embedding), last used last
        self._embeddings: OrderedDict[str, Any] = OrderedDict()

    @property
    def precision(self) -> str:
        """The image encoder's precision (``sam2-stock`` runs SAM 2 as shipped: float32)."""
        return "float32"

    def _predictor(self) -> Any:
        """A new ``SAM2ImagePredictor`` of the loaded model (no image set)."""
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        with quiet_deprecations():  # its transforms call torch.jit.script, which warns on every construction
            return SAM2ImagePredictor(self.loader.get(), mask_threshold=self.config.mask_threshold)

    def _embed(self, image: np.ndarray) -> Any:
        """A ``SAM2ImagePredictor`` with ``image`` set: the image encoder runs once, under
        :attr:`precision` (``torch.autocast``) on the context's device; the features are kept in
        float32 (the decoders cast them to their own type). Call under ``torch.inference_mode``."""
        predictor = self._predictor()
        with autocast(self.context.device, self.precision):
            predictor.set_image(image if image.flags.writeable else np.array(image))  # torchvision warns on read-only
        predictor._features = _float32_features(predictor._features)
        return predictor

    def _embed_batch(self, images: Sequence[np.ndarray]) -> list[Any]:
        """:meth:`_embed` of several images in one forward pass of the image encoder (SAM 2's own
        ``SAM2ImagePredictor.set_image_batch``): one predictor per image, each as :meth:`_embed`
        makes it (its own features, copied out of the batch, and its own original size)."""
        batch = self._predictor()
        with autocast(self.context.device, self.precision):
            batch.set_image_batch([image if image.flags.writeable else np.array(image) for image in images])
        predictors = []
        for i, image in enumerate(images):
            predictor = self._predictor()
            predictor._orig_hw = [image.shape[:2]]
            predictor._features = _float32_features(batch._features, i)
            predictor._is_image_set = True
            predictors.append(predictor)
        return predictors

    def _keep_embedding(self, key: str, predictor: Any) -> None:
        """Keep ``predictor`` (an image set) for prompts on the image of digest ``key``; at most
        :data:`EMBEDDINGS_KEPT` are kept, the least recently used goes first."""
        self._embeddings[key] = predictor
        self._embeddings.move_to_end(key)
        while len(self._embeddings) > EMBEDDINGS_KEPT:
            self._embeddings.popitem(last=False)

    def segment_prompt(self, image: np.ndarray, prompt: Prompt) -> ProposalSet:
        """Masks of the object a prompt points at, with ``SAM2ImagePredictor.predict``.

        The image embedding is computed once per image (by the first prompt, or already by
        :meth:`generate` of the fast generator, which also reuses a prompt's) and kept for the last
        :data:`EMBEDDINGS_KEPT` images, so further prompts run only the prompt encoder and the mask decoder. As SAM 2's
        image-predictor notebook advises, a single click (ambiguous) asks for three masks, while
        several clicks or a box ask for one (``multimask_output=False``).

        :return: 1 to 3 masks at the image's size, best predicted IoU first (empty masks dropped).
        :raises InputError: an image SAM 2 cannot take, or a prompt outside it.
        """
        import torch

        _check_image(image)
        if not isinstance(prompt, Prompt):
            raise InputError(
                f"segment_prompt needs an ovpanoptic.Prompt, got {type(prompt).__name__}: build one with "
                "Prompt(points_xy=[[x, y]], point_labels=[1]) or Prompt(box_xyxy=(x0, y0, x1, y1))"
            )
        h, w = image.shape[:2]
        prompt.check_inside(h, w)
        key = image_digest(image)
        with torch.inference_mode():
            predictor = self._embeddings.get(key)
            if predictor is None:
                predictor = self._embed(image)
            self._keep_embedding(key, predictor)
            n = len(prompt)
            masks, scores, _ = predictor.predict(
                point_coords=np.array(prompt.points_xy) if n else None,
                point_labels=np.array(prompt.point_labels) if n else None,
                box=np.array(prompt.box_xyxy, np.float32) if prompt.box_xyxy is not None else None,
                multimask_output=n == 1 and prompt.box_xyxy is None,
            )
        masks = masks.reshape(-1, h, w) > 0.5  # predict() returns the thresholded masks as 0.0 / 1.0
        scores = scores.reshape(-1).astype(np.float32)
        order = np.argsort(-scores, kind="stable")
        order = order[masks[order].reshape(len(order), -1).any(axis=1)]
        return ProposalSet.from_masks(masks[order], scores[order])

    def download(self) -> list[Path]:
        """Fetch the checkpoint into the hub cache (``ovpanoptic download sam2``)."""
        return [self.loader.checkpoint()]

    def generate(self, image: np.ndarray, *, progress: Progress | None = None) -> ProposalSet:
        """Proposals for an ``(H, W, 3)`` uint8 RGB image, masks at its size.

        Results are cached per image content (the settings are fixed per instance).
        """
        _check_image(image)
        key = image_digest(image)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        proposals = self._generate(image, progress)
        self._cache[key] = proposals
        while len(self._cache) > 2:
            self._cache.popitem(last=False)
        return proposals

    def _generate(self, image: np.ndarray, progress: Progress | None) -> ProposalSet:
        raise NotImplementedError

    def _finish(self, masks: np.ndarray, scores: np.ndarray) -> ProposalSet:
        """Apply ``min_area`` and ``max_proposals`` and build the ProposalSet."""
        if len(masks):
            areas = masks.reshape(len(masks), masks.shape[1] * masks.shape[2]).sum(axis=1)
            keep = np.flatnonzero(areas >= max(self.config.min_area, 1))
            masks, scores = masks[keep], scores[keep]
        if self.config.max_proposals and len(masks) > self.config.max_proposals:
            order = np.argsort(-scores, kind="stable")[: self.config.max_proposals]
            masks, scores = masks[order], scores[order]
        return ProposalSet.from_masks(masks, scores.astype(np.float32))


class StockSam2Generator(_Sam2Base):
    """``SAM2AutomaticMaskGenerator`` as shipped, adapted to return a :class:`ProposalSet`."""

    def _generate(self, image: np.ndarray, progress: Progress | None) -> ProposalSet:
        import torch
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        cfg = self.config
        model = self.loader.get()
        with quiet_deprecations():  # it builds a SAM2ImagePredictor (see _embed)
            generator = SAM2AutomaticMaskGenerator(
                model,
                points_per_side=cfg.points_per_side,
                points_per_batch=cfg.points_per_batch,
                pred_iou_thresh=cfg.pred_iou_thresh,
                stability_score_thresh=cfg.stability_score_thresh,
                stability_score_offset=cfg.stability_score_offset,
                mask_threshold=cfg.mask_threshold,
                box_nms_thresh=cfg.box_nms_thresh,
                crop_n_layers=cfg.crop_n_layers,
                crop_nms_thresh=cfg.crop_nms_thresh,
                crop_overlap_ratio=cfg.crop_overlap_ratio,
                crop_n_points_downscale_factor=cfg.crop_n_points_downscale_factor,
                multimask_output=cfg.multimask_output,
                output_mode="binary_mask",
            )
        if progress is not None:
            progress("sam2-stock: generating masks", 0, 1)
        with torch.inference_mode():
            records = generator.generate(np.array(image))  # writable copy (torchvision's to_tensor)
        if progress is not None:
            progress("sam2-stock: generating masks", 1, 1)
        h, w = image.shape[:2]
        masks = np.stack([r["segmentation"] for r in records]).astype(bool) if records else np.zeros((0, h, w), bool)
        scores = np.array([r["predicted_iou"] for r in records], np.float32)
        return self._finish(masks, scores)


@dataclass
class _Candidates:
    """Masks that passed the quality filters, kept at low resolution until NMS."""

    low_res: list[Any]
    iou: list[Any]
    boxes: list[Any]

    def cat(self, device: Any) -> tuple[Any, Any, Any]:
        import torch

        if not self.iou:
            return (
                torch.zeros(0, 256, 256, dtype=torch.float16, device=device),
                torch.zeros(0, device=device),
                torch.zeros(0, 4, device=device),
            )
        return torch.cat(self.low_res), torch.cat(self.iou), torch.cat(self.boxes)


class FastSam2Generator(_Sam2Base):
    """Grid-prompted SAM 2 with low-resolution filtering before any upsampling.

    After each :meth:`generate`, :attr:`stage_seconds` holds seconds per stage (``encoder``,
    ``decoder``, ``masks``, ``filter``, ``nms``, ``upsample``) and :attr:`prompts_decoded` the
    number of point prompts that went through the decoder.
    """

    config: Sam2FastConfig

    def __init__(self, config: Sam2FastConfig, context: ComponentContext | None = None) -> None:
        super().__init__(config, context)
        # image digest -> SAM2ImagePredictor from the last encode_batch, not used by generate() yet
        self._batched: OrderedDict[str, Any] = OrderedDict()
        self.stage_seconds: dict[str, float] = {}
        self.prompts_decoded = 0

    @property
    def precision(self) -> str:
        """The image encoder's precision (``precision`` of the config)."""
        return self.config.precision

    def encode_batch(self, images: Sequence[np.ndarray]) -> None:
        """Run SAM 2's image encoder on ``images`` in one forward pass
        (:class:`~ovpanoptic.components.BatchEncoder`); the next :meth:`generate` of each image uses
        its embedding instead of encoding it again (and then keeps it for prompts, as its own). The
        embeddings of an earlier call not used yet are dropped. On a CPU the batched pass gives the
        bits of single passes (``tests/test_batch_encoders.py``).

        :param images: ``(H, W, 3)`` uint8 RGB arrays (each resized to the model's square input).
            An image :meth:`generate` would refuse (not ``(H, W, 3)`` uint8 RGB, or under 32 px a
            side) is left out: its own :meth:`generate` says why.
        """
        import torch

        self._batched = OrderedDict()
        usable = []
        for image in images:
            try:
                _check_image(image)
            except InputError:
                continue
            usable.append(image)
        if len(usable) < 2:
            return
        with torch.inference_mode():
            predictors = self._embed_batch(usable)
        for image, predictor in zip(usable, predictors):
            self._batched[image_digest(image)] = predictor

    def _tick(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + now - since
        return now

    def _generate(self, image: np.ndarray, progress: Progress | None) -> ProposalSet:
        import torch
        from sam2.utils.amg import generate_crop_boxes
        from torchvision.ops import batched_nms, box_area

        cfg = self.config
        self.stage_seconds = {}
        self.prompts_decoded = 0
        h, w = image.shape[:2]
        crop_boxes, layers = generate_crop_boxes((h, w), cfg.crop_n_layers, cfg.crop_overlap_ratio)
        lows, ious, boxes, crops = [], [], [], []
        with torch.inference_mode():
            for index, (crop_box, layer) in enumerate(zip(crop_boxes, layers)):
                low, iou, box = self._process_crop(image, crop_box, layer, progress, index, len(crop_boxes))
                lows.append(low)
                ious.append(iou)
                boxes.append(box)
                crops.extend([crop_box] * len(iou))
            low, iou, box = torch.cat(lows), torch.cat(ious), torch.cat(boxes)
            crop_t = torch.tensor(crops, dtype=torch.float32, device=box.device).reshape(-1, 4)
            t = time.perf_counter()
            if len(crop_boxes) > 1 and len(iou):
                zeros = torch.zeros(len(box), device=box.device)
                keep = batched_nms(box, 1.0 / box_area(crop_t), zeros, cfg.crop_nms_thresh)
                low, iou, crop_t = low[keep], iou[keep], crop_t[keep]
            t = self._tick("nms", t)
            masks = self._upsample(low, crop_t, (h, w))
            self._tick("upsample", t)
        return self._finish(masks, iou.float().cpu().numpy().astype(np.float32))

    def _upsample(self, low: Any, crop_boxes: Any, size: tuple[int, int]) -> np.ndarray:
        """Survivors' low-res logits -> full-resolution bool masks placed in their crops."""
        import torch
        import torch.nn.functional as F

        h, w = size
        out = np.zeros((len(low), h, w), bool)
        for i in range(0, len(low), 8):
            chunk = low[i : i + 8]
            boxes = crop_boxes[i : i + 8].to(torch.int64).tolist()
            for j, (x0, y0, x1, y1) in enumerate(boxes):
                logits = chunk[j : j + 1, None].to(torch.float32)
                up = F.interpolate(logits, (y1 - y0, x1 - x0), mode="bilinear", align_corners=False)
                out[i + j, y0:y1, x0:x1] = (up[0, 0] > self.config.mask_threshold).cpu().numpy()
        return out

    def _process_crop(
        self, image: np.ndarray, crop_box: Sequence[int], layer: int, progress: Progress | None, index: int, n_crops: int
    ) -> tuple[Any, Any, Any]:
        import torch
        from sam2.utils.amg import (
            build_all_layer_point_grids,
            calculate_stability_score,
            is_box_near_crop_edge,
            uncrop_boxes_xyxy,
        )
        from torchvision.ops import batched_nms

        from .sam2_decoder import FastMaskDecoder

        cfg = self.config
        model = self.loader.get()
        x0, y0, x1, y1 = crop_box
        crop = np.array(image[y0:y1, x0:x1])  # a writable copy: torchvision warns on read-only arrays
        ch, cw = crop.shape[:2]
        t = time.perf_counter()
        # The whole image's embedding is shared with segment_prompt(), both ways.
        key = image_digest(image) if (ch, cw) == image.shape[:2] else None
        predictor = self._embeddings.get(key) if key is not None else None
        if predictor is None and key is not None:
            predictor = self._batched.pop(key, None)  # encoded with other images (encode_batch)
        if predictor is None:
            predictor = self._embed(crop)
        if key is not None:
            self._keep_embedding(key, predictor)
        decoder = FastMaskDecoder(model, getattr(torch, cfg.precision))
        ctx = decoder.prepare(predictor._features)
        self._tick("encoder", t)
        grid = build_all_layer_point_grids(cfg.points_per_side, cfg.crop_n_layers, cfg.crop_n_points_downscale_factor)[layer]
        points = grid * np.array([cw, ch])[None, :]
        order = np.arange(len(points))
        if cfg.adaptive:
            order = np.random.default_rng(0).permutation(len(points))
        device = ctx.src.device
        covered = torch.zeros((4 * ctx.hw[0], 4 * ctx.hw[1]), dtype=torch.bool, device=device)
        lr_h, lr_w = covered.shape
        found = _Candidates([], [], [])
        done = 0
        # Adaptive mode updates the coverage after every decoder batch, so it decodes in those.
        step = min(cfg.decoder_batch, cfg.points_per_batch) if cfg.adaptive else cfg.points_per_batch
        # Thousands of small operators: single-threaded while every core is shared (ovpanoptic.threads).
        with many_small_ops(str(device)):
            for start in range(0, len(order), step):
                batch = points[order[start : start + step]]
                if cfg.adaptive and found.iou:
                    ly = np.clip((batch[:, 1] / ch * lr_h).astype(int), 0, lr_h - 1)
                    lx = np.clip((batch[:, 0] / cw * lr_w).astype(int), 0, lr_w - 1)
                    batch = batch[~covered[torch.from_numpy(ly).to(device), torch.from_numpy(lx).to(device)].cpu().numpy()]
                if len(batch):
                    low, iou, box = self._decode_batch(predictor, decoder, ctx, batch, (ch, cw))
                    t = time.perf_counter()
                    if len(iou):
                        if cfg.stability_score_thresh > 0:  # a threshold of 0 keeps all: skip the two passes
                            stability = calculate_stability_score(low, cfg.mask_threshold, cfg.stability_score_offset)
                            keep = stability >= cfg.stability_score_thresh
                            low, iou, box = low[keep], iou[keep], box[keep]
                        edge = is_box_near_crop_edge(box, list(crop_box), [0, 0, image.shape[1], image.shape[0]])
                        low, iou, box = low[~edge], iou[~edge], box[~edge]
                        # Candidates wait for NMS in float16: half the memory of a 32x32 grid's 3072
                        # masks (400 MB instead of 800 MB); only signs near 0 can move, by < 1e-3.
                        found.low_res.append(low.to(torch.float16))
                        found.iou.append(iou)
                        found.boxes.append(box)
                        if cfg.adaptive:
                            covered |= (low > cfg.mask_threshold).any(dim=0)
                    self._tick("filter", t)
                done = min(start + step, len(order))
                if progress is not None:
                    progress(f"sam2: crop {index + 1}/{n_crops}, point prompts", done, len(order))
        t = time.perf_counter()
        low, iou, box = found.cat(device)
        if len(iou):
            keep = batched_nms(box.float(), iou.float(), torch.zeros(len(box), device=device), cfg.box_nms_thresh)
            low, iou, box = low[keep], iou[keep], box[keep]
        self._tick("nms", t)
        return low, iou, uncrop_boxes_xyxy(box, list(crop_box))

    def _decode_batch(
        self, predictor: Any, decoder: Any, ctx: Any, points: np.ndarray, crop_hw: tuple[int, int]
    ) -> tuple[Any, Any, Any]:
        """Decode a batch of grid points (crop pixels).

        Predicted IoU is checked first; masks are only built for prompts with a passing output.
        :return: low-res logits, predicted IoU and crop-pixel XYXY boxes of the passing masks.
        """
        import torch

        cfg = self.config
        model = predictor.model
        device = ctx.src.device
        pts = torch.as_tensor(points, dtype=torch.float32, device=device)
        coords = predictor._transforms.transform_coords(pts, normalize=True, orig_hw=crop_hw)
        labels = torch.ones(len(pts), dtype=torch.int, device=device)
        sparse, _ = model.sam_prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None)
        lows, ious = [], []
        self.prompts_decoded += len(pts)
        for i in range(0, len(pts), cfg.decoder_batch):
            t = time.perf_counter()
            iou, tokens, keys = decoder.transform(ctx, sparse[i : i + cfg.decoder_batch])
            t = self._tick("decoder", t)
            if cfg.multimask_output:
                iou = iou[:, 1:]
                passing = iou > cfg.pred_iou_thresh if cfg.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
                rows = passing.any(dim=1)
                if not rows.any():
                    continue
                masks = decoder.masks(ctx, keys[rows], tokens[rows], token_index=range(1, tokens.shape[1]))
                lows.append(masks[passing[rows]])
                ious.append(iou[rows][passing[rows]])
                self._tick("masks", t)
            else:
                masks = decoder.masks(ctx, keys, tokens)
                self._tick("masks", t)
                masks, best = model.sam_mask_decoder._dynamic_multimask_via_stability(masks, iou)
                passing = (
                    best[:, 0] > cfg.pred_iou_thresh
                    if cfg.pred_iou_thresh > 0
                    else torch.ones(len(best), dtype=torch.bool, device=device)
                )
                lows.append(masks[passing, 0])
                ious.append(best[passing, 0])
        if not ious:
            return (
                torch.zeros(0, 4 * ctx.hw[0], 4 * ctx.hw[1], device=device),
                torch.zeros(0, device=device),
                torch.zeros(0, 4, device=device),
            )
        low, iou = torch.cat(lows), torch.cat(ious)
        return low, iou, _low_res_boxes(low > cfg.mask_threshold, crop_hw)


def _low_res_boxes(masks: Any, crop_hw: tuple[int, int]) -> Any:
    """XYXY boxes (inclusive max, as sam2's ``batched_mask_to_box``) of low-res masks, in crop pixels."""
    import torch
    from sam2.utils.amg import batched_mask_to_box

    if len(masks) == 0:
        return torch.zeros(0, 4)
    h, w = crop_hw
    lh, lw = masks.shape[-2:]
    box = batched_mask_to_box(masks).to(torch.float32)
    sx, sy = w / lw, h / lh
    empty = ~masks.flatten(1).any(dim=1)
    out = torch.stack(
        [box[:, 0] * sx, box[:, 1] * sy, (box[:, 2] + 1) * sx - 1, (box[:, 3] + 1) * sy - 1], dim=1
    ).floor()
    out[empty] = 0
    return out


@hookimpl
def register_proposal_generators(register: RegisterComponent) -> None:
    """Register ``sam2`` (fast) and ``sam2-stock`` (SAM2AutomaticMaskGenerator)."""
    register(
        "sam2",
        FastSam2Generator,
        config=Sam2FastConfig,
        description="SAM 2.1 point-grid proposals, low-res filtering before upsampling (fast)",
    )
    register(
        "sam2-stock",
        StockSam2Generator,
        config=Sam2Config,
        description="SAM 2.1 SAM2AutomaticMaskGenerator as shipped (reference)",
    )


__all__ = [
    "FastSam2Generator",
    "SIZES",
    "Sam2Config",
    "Sam2FastConfig",
    "Sam2Model",
    "StockSam2Generator",
]
