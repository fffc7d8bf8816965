"""The ``clip`` classifier component (see the package docstring and ``docs/components/clip.md``)."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...components import ComponentContext, Progress
from ...device import autocast
from ...errors import ConfigError, InputError
from ...imageio import image_digest
from ...types import Category, ClassScores, ProposalSet, Vocabulary, size_text
from .config import ClipConfig
from .image import Preprocess, dense_input_size, mask_pooling_weights, masked_crops
from .loading import WeightsSource, build_model, load_tokenizer, weights_source
from .text_tower import CausalTextTower, causal_text_tower, encode_trimmed
from .text import TextEmbeddings, text_cache_dir, token_counter, weights_sha256

__all__ = ["ClipClassifier", "ClipFeatures"]

log = logging.getLogger(__name__)

#: Sub-folder of the component cache directory holding text embeddings.
TEXT_CACHE_FOLDER = "clip-text"


@dataclass(frozen=True, eq=False)
class ClipFeatures:
    """What :meth:`ClipClassifier.prepare` computes for one image (reused for every vocabulary).

    :param crop: ``(N, D)`` float32 L2-normalised crop embeddings, or ``None`` (dense mode).
    :param dense: ``(N, D)`` float32 L2-normalised mask-pooled embeddings, or ``None`` (crop mode).
    :param count: N, the number of proposals.
    :param model_key: identifies the model (architecture and checkpoint) that computed them.
    """

    crop: np.ndarray | None
    dense: np.ndarray | None
    count: int
    model_key: str

    def __len__(self) -> int:
        return self.count


@dataclass(frozen=True, eq=False)
class _Loaded:
    """Everything built on first use."""

    model: Any
    tokenizer: Any
    preprocess: Preprocess
    text: TextEmbeddings
    key: str
    embed_dim: int
    logit_scale: float


#: Attributes of an open_clip model that make up its text tower (``CLIP``: its own attributes;
#: ``CustomTextCLIP``: ``text``).
_TEXT_PARTS = ("text", "transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection", "attn_mask")


@dataclass(frozen=True, eq=False)
class _TextModel:
    """The model holding the text tower (the loaded model itself, or a text-only reload) and its
    causal parts (``None``: run ``encode_text`` on the full context)."""

    model: Any
    tower: CausalTextTower | None


def _normalised_rows(x: Any) -> Any:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class ClipClassifier:
    """Scores mask proposals against a vocabulary with an open_clip model.

    ``prepare`` does all image work (crops and/or one dense pass) and returns :class:`ClipFeatures`;
    ``score`` only needs the text embeddings (cached) and a matrix product, so re-querying an image
    with other class names is fast. The model loads on the first ``prepare``/``score``/``download``.

    :param config: the component's options.
    :param context: device, cache directory, offline flag and the registered prompt templates.
    :raises ConfigError: ``config.templates`` names no registered template set.
    """

    def __init__(self, config: ClipConfig, context: ComponentContext | None = None) -> None:
        self.config = config
        self.context = context or ComponentContext()
        templates = self.context.prompt_templates.get(config.templates)
        if not templates:
            available = ", ".join(sorted(self.context.prompt_templates)) or "(none registered)"
            raise ConfigError(
                f"classifier.clip.templates {config.templates!r} is not a registered prompt-template set; "
                f"available: {available}"
            )
        self.templates: tuple[str, ...] = tuple(templates)
        self._source: WeightsSource | None = None
        self._checkpoint: Path | None = None
        self._tokenizer: Any = None
        self._loaded: _Loaded | None = None
        self._text: _TextModel | None = None
        #: image digest -> its dense features from the last encode_batch, not used by prepare() yet
        self._batched: dict[str, tuple[Any, tuple[int, int]]] = {}

    # -- loading -------------------------------------------------------------------------------

    @property
    def source(self) -> WeightsSource:
        """The architecture and weights the config asks for (resolved without fetching)."""
        if self._source is None:
            self._source = weights_source(self.config)
        return self._source

    def checkpoint(self) -> Path:
        """The local checkpoint file, downloaded into the hub cache first if needed and allowed."""
        if self._checkpoint is None:
            self._checkpoint = self.source.resolve(self.context.offline)
        return self._checkpoint

    @property
    def tokenizer(self) -> Any:
        """open_clip's tokenizer of the architecture, loaded on first use (without the model)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.source.architecture, self.source.fix)
        return self._tokenizer

    def _state(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        source = self.source
        path = self.checkpoint()
        tokenizer = self.tokenizer
        model = build_model(source, path, self.context.device)
        if self.config.mode in ("dense", "ensemble"):
            self._check_dense_support(model)
        from open_clip import get_model_config, get_model_preprocess_cfg

        directory = None
        if self.config.text_cache:
            root = Path(self.context.cache_dir) / TEXT_CACHE_FOLDER
            digest = weights_sha256(path, root)
            directory = text_cache_dir(root, source.architecture, digest, self.config.templates, self.templates)
        stat = path.stat()
        self._loaded = _Loaded(
            model=model,
            tokenizer=tokenizer,
            preprocess=Preprocess.from_cfg(dict(get_model_preprocess_cfg(model))),
            text=TextEmbeddings(
                self._encode_text,
                self.templates,
                batch_size=self.config.text_batch_size,
                directory=directory,
                count_tokens=token_counter(tokenizer),
                context_length=getattr(tokenizer, "context_length", None),
            ),
            key=f"{source.architecture}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}",
            embed_dim=int(get_model_config(source.architecture)["embed_dim"]),
            logit_scale=float(model.logit_scale.detach().exp().reshape(-1)[0]),
        )
        self._text = _TextModel(model, causal_text_tower(model))
        if self._text.tower is None:
            log.info("%s: the text tower is not causal with end-token pooling; prompts run on the full context", source.architecture)
        return self._loaded

    @property
    def text_tower_loaded(self) -> bool:
        """Whether the text tower is in memory (it is loaded with the model, released by
        :meth:`release_text_tower`, and loaded again when a name the cache lacks is encoded)."""
        return self._text is not None

    def release_text_tower(self) -> None:
        """Drop the text tower from memory (the image tower stays); the text cache keeps every
        encoded name, and a name it lacks loads the tower again from the checkpoint."""
        if self._text is None or self._loaded is None:
            return
        model = self._loaded.model
        if self._text.model is model:
            for name in _TEXT_PARTS:
                if name in model._modules or name in model._parameters or name in model._buffers:
                    delattr(model, name)
        self._text = None
        log.info("released the text tower of %s", self.source.architecture)

    def _text_model(self) -> _TextModel:
        """The text tower, loaded again from the checkpoint when it was released."""
        self._state()
        if self._text is None:
            model = build_model(self.source, self.checkpoint(), self.context.device)
            del model.visual  # only the text side is kept
            self._text = _TextModel(model, causal_text_tower(model))
            log.info("loaded the text tower of %s again (a class name not in the text cache)", self.source.architecture)
        return self._text

    def load(self) -> Any:
        """Build the model and tokenizer now (otherwise done on first use); returns the torch model."""
        return self._state().model

    def download(self) -> list[Path]:
        """Fetch the weights (and tokenizer files, if any) into the cache and check they load."""
        self._state()
        return [self.checkpoint()]

    def _check_dense_support(self, model: Any) -> None:
        from open_clip.timm_model import TimmModel
        from open_clip.transformer import VisionTransformer

        visual = model.visual
        if isinstance(visual, VisionTransformer) and visual.attn_pool is None:
            return
        if isinstance(visual, TimmModel) and hasattr(visual.trunk, "forward_features") and hasattr(visual.trunk, "forward_head"):
            return
        raise ConfigError(
            f"classifier.clip.mode={self.config.mode!r} pools image features inside masks, which needs a ConvNeXt "
            f"(timm) or ViT image tower; {self.source.architecture} has a {type(visual).__name__}. Use "
            "--set classifier.clip.mode=crop, or a ConvNeXt/ViT architecture"
        )

    @property
    def logit_scale(self) -> float:
        """The model's learned logit scale (``exp`` of the stored parameter); temperature is its inverse."""
        return self._state().logit_scale

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text embedding space."""
        return self._state().embed_dim

    @property
    def preprocess(self) -> Preprocess:
        """The model's input size and normalisation."""
        return self._state().preprocess

    # -- encoders ------------------------------------------------------------------------------

    def _encode_text(self, prompts: list[str]) -> np.ndarray:
        """``(len(prompts), D)`` float32 text embeddings. Causal towers run only up to the batch's
        last end-of-text token (:mod:`.text_tower`: the same embeddings, ~6x faster for short
        prompts on a CPU); others run the model's ``encode_text`` on the full context."""
        import torch

        state = self._state()
        text = self._text_model()
        tokens = state.tokenizer(prompts).to(next(text.model.parameters()).device)
        with torch.inference_mode():
            if text.tower is not None:
                return encode_trimmed(text.tower, tokens).float().cpu().numpy()
            return text.model.encode_text(tokens).float().cpu().numpy()

    def _encode_images(self, batch: np.ndarray) -> np.ndarray:
        import torch

        model = self.load()
        x = torch.from_numpy(self.preprocess.normalise(batch)).to(next(model.parameters()).device)
        with torch.inference_mode(), autocast(self.context.device, self.config.precision):
            return _normalised_rows(model.encode_image(x).float()).cpu().numpy()

    # -- image side ----------------------------------------------------------------------------

    def prepare(self, image: np.ndarray, proposals: ProposalSet) -> ClipFeatures:
        """Embed every proposal: crops, a dense pass, or both (``mode``)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(
                f"clip: the image must be an (H, W, 3) uint8 RGB array, got {getattr(image, 'shape', None)} "
                f"{getattr(image, 'dtype', type(image).__name__)}"
            )
        if not isinstance(proposals, ProposalSet) or proposals.image_size != image.shape[:2]:
            raise InputError(
                f"clip: proposals must be a ProposalSet of masks at the image's size, {size_text(image.shape[:2])} (width x height); got "
                f"{size_text(proposals.image_size) if isinstance(proposals, ProposalSet) else type(proposals).__name__}"
            )
        state = self._state()
        mode = self.config.mode
        crop = self.crop_embeddings(image, proposals) if mode in ("crop", "ensemble") else None
        dense = self.dense_embeddings(image, proposals) if mode in ("dense", "ensemble") else None
        return ClipFeatures(crop=crop, dense=dense, count=len(proposals), model_key=state.key)

    def crop_embeddings(self, image: np.ndarray, proposals: ProposalSet) -> np.ndarray:
        """``(N, D)`` embeddings of the masked crops (rows of empty masks are zero)."""
        self.load()
        cfg = self.config
        n = len(proposals)
        chunks = []
        for start in range(0, n, cfg.crop_batch_size):
            stop = min(n, start + cfg.crop_batch_size)
            batch = masked_crops(
                image,
                proposals.masks[start:stop],
                proposals.boxes_xyxy[start:stop],
                self.preprocess,
                context=cfg.crop_context,
                blur=cfg.crop_fill == "blur",
            )
            chunks.append(self._encode_images(batch))
        out = np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)
        out[~proposals.masks.any(axis=(1, 2))] = 0.0
        return out.astype(np.float32, copy=False)

    def encode_batch(self, images: Sequence[np.ndarray]) -> None:
        """The dense pass's image encoder over ``images`` in one forward pass per input size
        (:class:`~ovpanoptic.components.BatchEncoder`): images whose dense input sizes match go
        through the encoder together; :meth:`prepare` of each image then pools its kept feature map
        instead of encoding it again. Nothing to do in ``crop`` mode (the crops depend on the
        proposals). The maps of an earlier call not used yet are dropped. A batched convolution may
        sum in another order than a single image's: measured on a CPU, ViT features are the same
        bits and ConvNeXt features within 3e-7 (``tests/test_batch_encoders.py``).

        :param images: ``(H, W, 3)`` uint8 RGB arrays at the pipeline's working size.
        """
        self._batched = {}
        if self.config.mode == "crop":
            return
        groups: dict[tuple[int, ...], list[tuple[np.ndarray, np.ndarray]]] = {}
        for image in images:
            x = self._dense_input(image)
            groups.setdefault(x.shape, []).append((image, x))
        for group in groups.values():
            for (image, _), features in zip(group, self._dense_features(np.concatenate([x for _, x in group]))):
                self._batched[image_digest(image)] = features

    def _dense_input(self, image: np.ndarray) -> np.ndarray:
        """The dense pass's normalised ``(1, 3, h, w)`` float32 input for ``image``: its aspect
        ratio, the longer side ``dense_size``, both multiples of the tower's stride."""
        from open_clip.timm_model import TimmModel

        visual = self.load().visual
        multiple = _timm_stride(visual) if isinstance(visual, TimmModel) else int(visual.patch_size[0])
        h, w = dense_input_size(image.shape[0], image.shape[1], self.config.dense_size, multiple)
        return self.preprocess.normalise(self.preprocess.resize(image, h, w)[None])

    def _dense_features(self, x: np.ndarray) -> list[tuple[Any, tuple[int, int]]]:
        """The tower's features of a normalised ``(B, 3, h, w)`` batch, per image: ``(cells,
        grid)`` with ``cells`` ``(gh*gw, C)`` float32 on the model's device (a timm trunk's feature
        map, or a ViT's projected patch tokens) and ``grid`` ``(gh, gw)``.

        :raises ConfigError: a timm trunk whose features are not a ``(B, C, h, w)`` map.
        """
        import torch
        from open_clip.timm_model import TimmModel

        model = self.load()
        visual = model.visual
        batch = torch.from_numpy(x).to(next(model.parameters()).device)
        with torch.inference_mode():
            if isinstance(visual, TimmModel):
                with autocast(self.context.device, self.config.precision):
                    fmap = visual.trunk.forward_features(batch).float()
                if fmap.ndim != 4:
                    raise ConfigError(
                        f"classifier.clip dense mode: the {type(visual.trunk).__name__} trunk of "
                        f"{self.source.architecture} gives {tuple(fmap.shape)} features, not a (1, C, h, w) map; "
                        "use --set classifier.clip.mode=crop"
                    )
                grid = (int(fmap.shape[2]), int(fmap.shape[3]))
                return [(fmap[i].flatten(1).T.float().clone(), grid) for i in range(len(fmap))]
            with autocast(self.context.device, self.config.precision):
                tokens, grid = _vit_patch_embeddings(visual, batch)  # (B, h*w, D), already projected
            return [(tokens[i].float().clone(), grid) for i in range(len(tokens))]

    def dense_embeddings(self, image: np.ndarray, proposals: ProposalSet) -> np.ndarray:
        """``(N, D)`` embeddings pooled inside each mask from one encoder pass (empty masks: zero rows);
        the pass :meth:`encode_batch` made for this image when there is one."""
        import torch
        from open_clip.timm_model import TimmModel

        model = self.load()
        visual = model.visual
        n = len(proposals)
        if n == 0:
            return np.zeros((0, self.embed_dim), np.float32)
        device = next(model.parameters()).device
        kept = self._batched.pop(image_digest(image), None) if self._batched else None
        if kept is None:
            (kept,) = self._dense_features(self._dense_input(image))
        cells, grid = kept
        out = np.zeros((n, self.embed_dim), np.float32)
        with torch.inference_mode():
            for start, weights in mask_pooling_weights(proposals.masks, grid):
                pooled = weights.to(device) @ cells  # area-weighted mean of the features inside each mask
                if isinstance(visual, TimmModel):
                    # The timm head (global pool -> norm -> MLP) then open_clip's projection, on a 1x1 "image":
                    emb = visual.head(visual.trunk.forward_head(pooled[:, :, None, None]))
                else:
                    emb = pooled
                out[start : start + len(pooled)] = _normalised_rows(emb.float()).cpu().numpy()
        out[~proposals.masks.any(axis=(1, 2))] = 0.0
        return out

    # -- text side and scores ------------------------------------------------------------------

    def name_key(self, name: str) -> Hashable:
        """The token ids the text encoder reads for ``name``: open_clip's own tokenizer, with its own
        text cleaning (ftfy, HTML entities, case, spaces; ``t-shirt`` and ``t - shirt``, ``man's``
        and ``man’s``, ``&`` and ``&amp;`` give the same ids, and so the same embedding). Loads the
        tokenizer only (see :class:`~ovpanoptic.components.NameKeyer`)."""
        tokenizer = self.tokenizer
        if callable(getattr(tokenizer, "encode", None)):  # SimpleTokenizer: cleaning + BPE, uncut
            return tuple(tokenizer.encode(name))
        return tuple(tokenizer([name])[0].tolist())  # HF tokenizers: their cleaning, padded to the context

    def text_embeddings(self, categories: tuple[Category, ...] | list[Category]) -> np.ndarray:
        """``(C, D)`` normalised class embeddings (synonyms averaged), from the cache when possible."""
        return self._state().text.categories(list(categories))

    def prepare_vocabulary(self, vocabulary: Vocabulary, *, progress: Progress | None = None) -> None:
        """Load the model and encode the vocabulary's names (and the background prompts) now,
        reporting progress; what is encoded is saved to the cache chunk by chunk.

        :raises VocabularyError: a name is too long for the text encoder.
        :raises WeightsError: the weights are missing.
        """
        state = self._state()
        state.text.categories(list(vocabulary.categories), progress)
        if self.config.background_prompts:
            state.text.names(list(self.config.background_prompts))
        if not self.config.keep_text_tower:
            self.release_text_tower()

    def score(self, prepared: ClipFeatures, vocabulary: Vocabulary) -> ClassScores:
        """Logits and "no object"-aware probabilities of each prepared proposal for each category.

        ``logits = logit_scale * cosine``; probabilities are a softmax over the categories, the
        "no object" column (cosine ``no_object_similarity``) and the ``background_prompts``
        columns, the extra columns then dropped, so each row sums to ``1 - P(no object)``. With
        both crop and dense features, the two are combined by a geometric mean of probabilities
        (a weighted mean of logits). ``embeddings`` are the proposals' image features (the same
        weighting, L2-normalised): ``segment-video`` re-identifies lost tracks with them.
        """
        if not isinstance(prepared, ClipFeatures):
            raise InputError(f"clip: score() needs the ClipFeatures returned by prepare(), got {type(prepared).__name__}")
        if not isinstance(vocabulary, Vocabulary):
            raise InputError(f"clip: score() needs a Vocabulary, got {type(vocabulary).__name__}")
        state = self._state()
        if prepared.model_key != state.key:
            raise InputError("clip: these features were prepared by another model; call prepare() again")
        cfg = self.config
        scale = state.logit_scale
        c = len(vocabulary)
        n = prepared.count
        if n == 0:
            empty = np.zeros((0, c), np.float32)
            return ClassScores(logits=empty, probs=empty.copy(), category_ids=vocabulary.ids, temperature=1.0 / scale)
        text = state.text.categories(list(vocabulary.categories))
        if cfg.background_prompts:
            text = np.concatenate([text, state.text.names(list(cfg.background_prompts))])
        parts: list[tuple[float, np.ndarray]] = []
        if prepared.crop is not None:
            parts.append((1.0 - cfg.ensemble_weight if prepared.dense is not None else 1.0, prepared.crop))
        if prepared.dense is not None:
            parts.append((cfg.ensemble_weight if prepared.crop is not None else 1.0, prepared.dense))
        logits = np.zeros((n, text.shape[0]), np.float64)
        for weight, feats in parts:
            logits += weight * (scale * (feats.astype(np.float64) @ text.T.astype(np.float64)))
        columns = [logits]
        if cfg.no_object_similarity > -1.0:
            columns.append(np.full((n, 1), scale * cfg.no_object_similarity))
        probs = _softmax(np.concatenate(columns, axis=1))[:, :c]
        # The image features themselves (weighted like the logits, then L2-normalised; empty masks
        # stay zero rows): segment-video compares them to re-identify lost tracks.
        feats = sum(weight * f.astype(np.float64) for weight, f in parts)
        norms = np.linalg.norm(feats, axis=1, keepdims=True)
        embeddings = np.where(norms > 0, feats / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        return ClassScores(
            logits=logits[:, :c].astype(np.float32),
            probs=probs.astype(np.float32),
            category_ids=vocabulary.ids,
            temperature=1.0 / scale,
            embeddings=embeddings,
        )


def _timm_stride(visual: Any) -> int:
    """Total stride of a timm trunk (32 for ConvNeXt)."""
    info = getattr(visual.trunk, "feature_info", None)
    try:
        return int(info[-1]["reduction"])  # type: ignore[index]
    except (TypeError, KeyError, IndexError):
        return 32


def _vit_patch_embeddings(visual: Any, x: Any) -> tuple[Any, tuple[int, int]]:
    """Last-layer patch tokens of an open_clip ViT through ``ln_post`` and ``proj``: ``(B, h*w, D)``
    for a ``(B, 3, H, W)`` input, and the patch grid ``(h, w)``.

    The input may be larger than the training size: the positional embedding grid is resized
    (bicubic) to the input's patch grid.
    """
    import torch
    import torch.nn.functional as F

    patches = visual.conv1(x)  # (B, width, gh, gw)
    gh, gw = int(patches.shape[2]), int(patches.shape[3])
    tokens = patches.flatten(2).transpose(1, 2)  # (B, gh*gw, width)
    pos = visual.positional_embedding.to(tokens.dtype)
    th, tw = visual.grid_size
    spatial = pos[1:].reshape(1, th, tw, -1).permute(0, 3, 1, 2)
    if (gh, gw) != (th, tw):
        spatial = F.interpolate(spatial, size=(gh, gw), mode="bicubic", align_corners=False)
    spatial = spatial.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
    cls = (visual.class_embedding.to(tokens.dtype) + pos[0]).reshape(1, 1, -1).expand(len(tokens), 1, -1)
    seq = torch.cat([cls, tokens + spatial], dim=1)
    seq = visual.transformer(visual.ln_pre(seq))
    out = visual.ln_post(seq[:, 1:])
    if visual.proj is not None:
        out = out @ visual.proj
    return out, (gh, gw)
