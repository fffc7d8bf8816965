"""Building an open_clip model from a resolved checkpoint, strictly, and its tokenizer.

Weights come from :func:`ovpanoptic.weights.resolve_weights` (a local file, ``hf-hub:``, or an
open_clip pretrained tag mapped to the Hugging Face repository open_clip itself would use). The
architecture is built by ``open_clip.create_model(name, pretrained=None, load_weights=False)``
(which downloads nothing) and the checkpoint loaded with a strict key and shape match. Nothing here
ever leaves a model with random weights: every failure raises :class:`WeightsError`.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ConfigError, MissingDependencyError, WeightsError
from ...weights import HUB_PREFIX, HubFile, load_state_dict, load_strict, resolve_weights
from .config import DEFAULT_MODELS, DEFAULT_TAGS, ClipConfig

__all__ = ["WeightsSource", "build_model", "import_open_clip", "load_tokenizer", "read_checkpoint", "weights_source"]

log = logging.getLogger(__name__)

#: File name of open_clip weights in a Hugging Face repository without an explicit file.
HUB_WEIGHTS_NAME = "open_clip_pytorch_model.bin"

_INSTALL = "pip install open-clip-torch (or run scripts/bootstrap.sh)"


def import_open_clip() -> tuple[Any, Any]:
    """``(torch, open_clip)``; :class:`MissingDependencyError` with the pip command when absent."""
    try:
        import open_clip
        import torch
    except ImportError as exc:
        raise MissingDependencyError(f"the clip classifier needs torch and open_clip ({exc}): {_INSTALL}") from None
    return torch, open_clip


def _clean_tag(tag: str) -> str:
    return tag.lower().replace("-", "_")


def _is_path_or_hub(spec: str) -> bool:
    return spec.startswith(HUB_PREFIX) or os.sep in spec or Path(spec).suffix != "" or Path(spec).expanduser().exists()


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's weights come from, before anything is fetched.

    :param architecture: the open_clip architecture name.
    :param spec: the ``pretrained`` value used: a tag, a path or ``hf-hub:...``.
    :param tag_cfg: open_clip's pretrained config of the tag (``hf_hub``, ``mean``, ``std``,
        ``quick_gelu``, ...); empty for a path or hub id.
    :param known: every pretrained tag of the architecture that lives on the hub.
    :param fix: the command that fetches these weights.
    """

    architecture: str
    spec: str
    tag_cfg: Mapping[str, Any] = field(default_factory=dict)
    known: Mapping[str, HubFile] = field(default_factory=dict)
    fix: str = ""

    @property
    def what(self) -> str:
        return f"CLIP {self.architecture} checkpoint ({self.spec})"

    def resolve(self, offline: bool) -> Path:
        """The local checkpoint file (downloaded into the hub cache when allowed)."""
        if self.tag_cfg and not self.tag_cfg.get("hf_hub"):
            raise WeightsError(
                f"pretrained tag {self.spec!r} of {self.architecture} is published only at {self.tag_cfg.get('url')}, "
                "not on the Hugging Face hub: download that file and set classifier.clip.pretrained to its path"
            )
        if not self.tag_cfg and not self.spec.startswith(HUB_PREFIX):
            path = Path(self.spec).expanduser()
            if not path.is_file():
                tags = ", ".join(self.known) or "none"
                raise WeightsError(
                    f"{self.what} not found: {path} does not exist (or is not a file). Pass an existing checkpoint "
                    f"path, hf-hub:ORG/REPO/FILE, or one of the open_clip tags of {self.architecture} ({tags}), "
                    f"fetched ahead of time with `{self.fix}`"
                )
            return path
        return resolve_weights(
            self.spec,
            what=self.what,
            known=self.known,
            default_filename=HUB_WEIGHTS_NAME,
            fix=self.fix,
            offline=offline,
        )


def _hub_file_of(hf_hub: str) -> HubFile:
    """open_clip's ``hf_hub`` entry (``org/repo/`` or ``org/repo/file``) -> :class:`HubFile`."""
    parts = hf_hub.split("/")
    return HubFile(f"{parts[0]}/{parts[1]}", "/".join(p for p in parts[2:] if p) or HUB_WEIGHTS_NAME)


def weights_source(config: ClipConfig) -> WeightsSource:
    """Work out the architecture and weights a config asks for (imports open_clip, fetches nothing).

    :raises ConfigError: unknown architecture, or no ``pretrained`` given for an architecture
        without a default tag (the message lists its tags).
    """
    _, open_clip = import_open_clip()
    arch = config.architecture
    models = open_clip.list_models()
    if arch not in models:
        close = difflib.get_close_matches(arch, models, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"classifier.clip.model {arch!r} is not an open_clip architecture.{hint} See open_clip.list_models() "
            f"({len(models)} architectures)"
        )
    tags = list(open_clip.list_pretrained_tags_by_model(arch))
    known = {
        tag: _hub_file_of(cfg["hf_hub"])
        for tag in tags
        if (cfg := open_clip.get_pretrained_cfg(arch, tag)).get("hf_hub")
    }
    spec = config.pretrained
    if not spec:
        if not config.model:
            spec = DEFAULT_MODELS[config.mode][1]
        elif arch in DEFAULT_TAGS:
            spec = DEFAULT_TAGS[arch]
        elif len(tags) == 1:
            spec = tags[0]
        else:
            raise ConfigError(
                f"classifier.clip.pretrained is empty and {arch} has no default weights: set it to one of its "
                f"open_clip tags ({', '.join(tags) or 'none'}), a local checkpoint path, or hf-hub:ORG/REPO/FILE"
            )
    tag_cfg: Mapping[str, Any] = {}
    if _clean_tag(spec) in tags:
        spec = _clean_tag(spec)
        tag_cfg = open_clip.get_pretrained_cfg(arch, spec)
    elif not _is_path_or_hub(spec):
        raise WeightsError(
            f"classifier.clip.pretrained {spec!r} is not an open_clip tag of {arch} ({', '.join(tags) or 'none'}), "
            "an existing checkpoint file, or hf-hub:ORG/REPO/FILE"
        )
    default_tag = DEFAULT_TAGS.get(arch)
    fix = f"ovpanoptic download clip --model {arch}"
    if spec != default_tag and tag_cfg:
        fix += f" --set classifier.clip.pretrained={spec}"
    return WeightsSource(arch, spec, tag_cfg, known, fix)


@contextlib.contextmanager
def _without_random_init_warning() -> Iterator[None]:
    """Hide open_clip's "initialized randomly" warning: the checkpoint is loaded right after."""

    def keep(record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def read_checkpoint(path: Path, *, what: str, fix: str) -> dict[str, Any]:
    """Read a state dict (``.safetensors`` or a ``torch.save`` file, optionally under ``state_dict``)."""
    data = load_state_dict(path, what=what, fix=fix)
    nested = data.get("state_dict")
    if isinstance(nested, Mapping) and nested and all(isinstance(k, str) for k in nested):
        data = nested  # an open_clip training checkpoint (epoch, optimizer, state_dict)
    if data and all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return dict(data)


def _harmonise(state: dict[str, Any], model: Any) -> dict[str, Any]:
    """Fix representation-only differences open_clip checkpoints are known to have."""
    own = model.state_dict()
    for key in ("logit_scale", "logit_bias"):
        if key in state and key in own and state[key].ndim != own[key].ndim and state[key].numel() == own[key].numel():
            state[key] = state[key].reshape(own[key].shape)
    position_ids = "text.transformer.embeddings.position_ids"  # dropped by newer transformers versions
    if position_ids in state and position_ids not in own:
        del state[position_ids]
    return state


def build_model(source: WeightsSource, path: Path, device: str) -> Any:
    """Build ``source.architecture``, load ``path`` strictly, move to ``device``, eval mode.

    :raises WeightsError: unreadable, truncated or mismatched checkpoint (mismatches list keys).
    """
    torch, open_clip = import_open_clip()
    preprocess = {k: source.tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in source.tag_cfg}
    with _without_random_init_warning():
        model = open_clip.create_model(
            source.architecture,
            pretrained=None,
            load_weights=False,
            device="cpu",
            force_quick_gelu=bool(source.tag_cfg.get("quick_gelu", False)),
            force_preprocess_cfg=preprocess or None,
            pretrained_image=False,
            pretrained_text=False,
        )
    state = _harmonise(read_checkpoint(path, what=source.what, fix=source.fix), model)
    load_strict(model, state, what=source.what, path=path, fix=source.fix)
    model = model.to(torch.device(device)).eval()
    log.info("loaded %s from %s on %s", source.architecture, path, device)
    return model


def load_tokenizer(architecture: str, fix: str) -> Any:
    """open_clip's tokenizer of ``architecture`` (the built-in CLIP BPE needs no download).

    :raises WeightsError: the tokenizer needs hub files that are not available.
    """
    _, open_clip = import_open_clip()
    try:
        return open_clip.get_tokenizer(architecture)
    except Exception as exc:  # noqa: BLE001 - HF tokenizers fail with many error types when offline
        raise WeightsError(
            f"the tokenizer of {architecture} could not be loaded ({type(exc).__name__}: {str(exc)[:200]}). It needs "
            f"files from the Hugging Face hub: run `{fix}` with network access (offline mode: HF_HUB_OFFLINE=1 uses "
            "only the local cache), or choose an architecture with the built-in CLIP tokenizer"
        ) from None
