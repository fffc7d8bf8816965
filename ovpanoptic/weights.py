"""Resolving and loading model weights: local files, the Hugging Face cache, offline mode.

Rules every model component follows:

* a model spec is a local checkpoint path, a known short name (``"tiny"``, ...), or a hub id
  ``hf-hub:ORG/REPO[/FILE]``;
* downloads go through ``huggingface_hub`` into its cache (with its progress bar), and never happen
  when offline (``HF_HUB_OFFLINE=1`` or the component's ``offline`` context);
* checkpoints load with ``torch.load(..., weights_only=True)`` and a strict state-dict match;
* anything missing, truncated or mismatched raises :class:`~ovpanoptic.errors.WeightsError` saying
  what was looked for, where, and the command that fixes it. Nothing falls back to random weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MissingDependencyError, WeightsError

__all__ = ["HubFile", "is_offline", "load_state_dict", "load_strict", "resolve_weights", "sha256_of"]

log = logging.getLogger(__name__)

HUB_PREFIX = "hf-hub:"


@dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face model repository.

    :param repo_id: ``ORG/REPO``.
    :param filename: path of the file in the repository.
    :param revision: a branch, tag or commit; ``None`` for the default branch.
    :param sha256: expected SHA-256 of the file, verified after download when known.
    """

    repo_id: str
    filename: str
    revision: str | None = None
    sha256: str | None = None

    @property
    def url(self) -> str:
        return f"{HUB_PREFIX}{self.repo_id}/{self.filename}"


def is_offline(offline: bool = False) -> bool:
    """``True`` when ``offline`` is set or ``HF_HUB_OFFLINE`` is truthy."""
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> str:
    """The Hugging Face hub cache folder, from the environment at call time (``HF_HUB_CACHE``, then
    ``HF_HOME/hub``; huggingface_hub itself reads them once, at import), else its default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub is a pinned dependency
        return os.path.expanduser("~/.cache/huggingface/hub")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def parse_hub_spec(spec: str, default_filename: str | None) -> HubFile:
    """``hf-hub:ORG/REPO[/FILE]`` (or ``ORG/REPO[/FILE]``) -> :class:`HubFile`."""
    body = spec[len(HUB_PREFIX):] if spec.startswith(HUB_PREFIX) else spec
    parts = [p for p in body.split("/") if p]
    if len(parts) < 2:
        raise WeightsError(f"{spec!r} is not a hub id: use hf-hub:ORG/REPO or hf-hub:ORG/REPO/FILE")
    filename = "/".join(parts[2:]) or default_filename
    if not filename:
        raise WeightsError(f"{spec!r} names no file: use hf-hub:ORG/REPO/FILE")
    return HubFile(f"{parts[0]}/{parts[1]}", filename)


def resolve_weights(
    spec: str | Path,
    *,
    what: str,
    known: Mapping[str, HubFile] | None = None,
    default_filename: str | None = None,
    fix: str,
    offline: bool = False,
) -> Path:
    """Resolve a model spec to a local checkpoint file, downloading into the hub cache if allowed.

    :param spec: a local path, a key of ``known``, or ``hf-hub:ORG/REPO[/FILE]``.
    :param what: what the weights are, for messages (``"SAM 2.1 hiera tiny checkpoint"``).
    :param known: short names -> hub files.
    :param default_filename: file name for hub ids without one.
    :param fix: the command that fetches the weights (``"ovpanoptic download sam2 --size tiny"``).
    :param offline: never touch the network.
    :raises WeightsError: nothing found (saying where it looked and ``fix``), or a checksum mismatch.
    """
    known = known or {}
    text = str(spec)
    path = Path(text).expanduser()
    if text in known:
        hub = known[text]
    elif text.startswith(HUB_PREFIX):
        hub = parse_hub_spec(text, default_filename)
    elif path.exists() or path.suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt") or os.sep in text:
        if path.is_file():
            return path
        raise WeightsError(
            f"{what} not found: {path} does not exist (or is not a file). Pass an existing checkpoint path, "
            f"a known name ({', '.join(sorted(known)) or 'none'}), or hf-hub:ORG/REPO/FILE"
        )
    else:
        raise WeightsError(
            f"unknown {what} {text!r}: use one of {', '.join(sorted(known)) or '(none)'}, a local checkpoint "
            "path, or hf-hub:ORG/REPO/FILE"
        )
    return _hub_download(hub, what=what, fix=fix, offline=is_offline(offline))


def _hub_download(hub: HubFile, *, what: str, fix: str, offline: bool) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:
        raise MissingDependencyError(f"downloading {what} needs huggingface_hub ({exc}): pip install huggingface_hub") from None
    where = f"{hub.url} (cache: {hub_cache_dir()})"
    if not offline:
        cached = _cached_file(hub)
        if cached is not None:
            local_only = True
        else:
            _check_hub_reachable(what, where, fix)
            local_only = False
    else:
        local_only = True
    try:
        local = Path(
            hf_hub_download(hub.repo_id, hub.filename, revision=hub.revision, local_files_only=local_only, cache_dir=hub_cache_dir())
        )
    except LocalEntryNotFoundError:
        if offline:
            raise WeightsError(
                f"{what} is not in the local cache and offline mode is on (HF_HUB_OFFLINE=1): looked for "
                f"{where}. Fetch it once with network access: {fix}; or pass a local checkpoint path"
            ) from None
        raise WeightsError(f"{what} could not be downloaded from {where}: no network? Run `{fix}` where the hub is reachable, "
                           "or pass a local checkpoint path") from None
    except Exception as exc:  # noqa: BLE001 - hub errors are many (HTTP, auth, disk); all mean "not available"
        raise WeightsError(
            f"{what} could not be fetched from {where}: {type(exc).__name__}: {exc}. Run `{fix}` with network "
            "access, or pass a local checkpoint path"
        ) from None
    if hub.sha256 is not None:
        digest = sha256_of(local)
        if digest != hub.sha256:
            raise WeightsError(
                f"{what} at {local} has SHA-256 {digest[:12]}..., expected {hub.sha256[:12]}...: the download is "
                f"corrupt or truncated. Delete it and run `{fix}`"
            )
    return local


def _cached_file(hub: HubFile) -> Path | None:
    """The hub file in the local cache, if it is there (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - pinned dependency
        return None
    found = try_to_load_from_cache(hub.repo_id, hub.filename, revision=hub.revision, cache_dir=hub_cache_dir())
    return Path(found) if isinstance(found, str) else None


#: Seconds to wait for the hub's address before saying it cannot be reached.
HUB_CONNECT_TIMEOUT = 5.0


def _check_hub_reachable(what: str, where: str, fix: str) -> None:
    """Fail at once, in one line, when the hub cannot be reached (instead of huggingface_hub's
    retries, which print many lines and take tens of seconds).

    :raises WeightsError: naming ``HF_HUB_OFFLINE=1`` and the ``fix`` command.
    """
    import socket
    from urllib.parse import urlsplit

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parts = urlsplit(endpoint)
    host = parts.hostname or "huggingface.co"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise WeightsError(
            f"{what} is not in the local cache and the hub ({endpoint}) cannot be reached ({exc.strerror or exc}): "
            f"looked for {where}. Fetch it once where the hub is reachable with `{fix}` (then HF_HUB_OFFLINE=1 "
            "keeps ovpanoptic off the network), or pass a local checkpoint path"
        ) from None


def in_hub_cache(path: Path) -> bool:
    """Whether ``path`` lies in the Hugging Face hub cache (a download that ``ovpanoptic download`` can redo)."""
    try:
        return Path(path).resolve().is_relative_to(Path(hub_cache_dir()).resolve())
    except OSError:
        return False


def load_state_dict(path: Path, *, what: str, fix: str, key: str | None = None) -> dict[str, Any]:
    """Read a checkpoint: ``.safetensors`` files with safetensors, anything else with
    ``torch.load(weights_only=True)``; ``key`` selects a nested dict (e.g. ``"model"``).

    :raises WeightsError: unreadable, truncated, not a state dict, or ``key`` missing.
    :raises MissingDependencyError: a ``.safetensors`` file without the safetensors package.
    """
    read: Any
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise MissingDependencyError(f"{what} is a .safetensors file: pip install safetensors") from None
        read, kind = (lambda: load_file(str(path), device="cpu")), "safetensors"
    else:
        import torch

        # Memory-mapped: tensors are read from the file as load_strict copies them into the model
        # (and their pages dropped right after), so the checkpoint is never held in memory twice.
        read, kind = (lambda: torch.load(path, map_location="cpu", weights_only=True, mmap=True)), "PyTorch"
    try:
        data = read()
    except FileNotFoundError:
        raise WeightsError(f"{what} not found at {path}; run `{fix}` or pass an existing checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - torch and safetensors raise many types for corrupt files
        remedy = (
            f"Delete it and run `{fix}`"
            if in_hub_cache(path)
            else "Replace it with a complete copy of the checkpoint (or use a known model name, which ovpanoptic downloads)"
        )
        raise WeightsError(
            f"{what} at {path} cannot be read ({type(exc).__name__}: {str(exc)[:200]}): the file is truncated, "
            f"corrupt or not a {kind} checkpoint. {remedy}"
        ) from None
    if key is not None:
        if not isinstance(data, Mapping) or key not in data:
            keys = sorted(data)[:8] if isinstance(data, Mapping) else type(data).__name__
            raise WeightsError(f"{what} at {path} has no {key!r} entry (it has {keys}); is it the right file?")
        data = data[key]
    if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
        raise WeightsError(f"{what} at {path} is not a state dict; is it the right file?")
    return dict(data)


def load_strict(model: Any, state_dict: Mapping[str, Any], *, what: str, path: Path, fix: str) -> None:
    """``model.load_state_dict(state_dict, strict=True)`` with a message listing the mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shape = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shape:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})")
        if shape:
            k = shape[0]
            details.append(f"{len(shape)} shape mismatches (e.g. {k}: {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)})")
        raise WeightsError(
            f"{what} at {path} does not match the model architecture: {'; '.join(details)}. Check that the "
            f"model size/architecture matches the checkpoint, or run `{fix}`"
        )
    if _plain_loading(model):
        # What load_state_dict does for plain modules (copy each tensor into the model's own),
        # one tensor at a time, dropping each memory-mapped source's pages from this process
        # right after: loading never holds a second copy of the model, and the model never
        # depends on the file afterwards (it may be replaced, rewritten or truncated).
        import torch

        mappings = file_mappings(path)
        with torch.no_grad():
            for key, target in own.items():
                source = state_dict[key]
                target.copy_(source)
                drop_mapped_pages(source, mappings)
    else:
        model.load_state_dict(state_dict, strict=True)


def _plain_loading(model: Any) -> bool:
    """Whether ``model.load_state_dict`` would only copy tensors: no module overrides
    ``_load_from_state_dict`` and none has load hooks."""
    import torch

    base = torch.nn.Module._load_from_state_dict
    return all(
        type(m)._load_from_state_dict is base and not m._load_state_dict_pre_hooks and not m._load_state_dict_post_hooks
        for m in model.modules()
    )


def file_mappings(path: Path) -> list[tuple[int, int]]:
    """Address ranges at which this process maps ``path`` (``/proc/self/maps``; empty elsewhere)."""
    try:
        target = str(Path(path).resolve())
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and parts[5] == target:
            start, _, end = parts[0].partition("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def drop_mapped_pages(tensor: Any, mappings: Sequence[tuple[int, int]]) -> None:
    """Tell the kernel this process no longer needs the pages of a contiguous CPU tensor that lies
    in one of ``mappings`` (a memory-mapped checkpoint, see :func:`file_mappings`):
    ``madvise(MADV_DONTNEED)``, Linux only. The file is not changed; the tensor must not be used
    afterwards. Tensors outside the mappings (heap memory) are left alone."""
    if sys.platform != "linux" or not mappings or tensor.device.type != "cpu" or not tensor.is_contiguous():
        return
    start = tensor.data_ptr()
    end = start + tensor.numel() * tensor.element_size()
    madvise = _libc_function("madvise")
    if madvise is None or not any(lo <= start and end <= hi for lo, hi in mappings):
        return
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    first, last = -(-start // page) * page, (end // page) * page  # whole pages inside the tensor
    if last > first:
        madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), mmap.MADV_DONTNEED)


def _libc_function(name: str) -> Any:
    """A function of the C library this process runs on (Linux), or ``None`` where it has none
    (musl has no ``malloc_trim``; other systems are not asked)."""
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)  # the process's own symbols, libc included
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand memory that was freed back to the operating system (glibc's ``malloc_trim``; nothing
    elsewhere). glibc keeps freed blocks smaller than its mmap threshold for reuse, so a stage
    with large temporaries (SAM 2's image encoder) would leave them in the process's resident
    memory under the next stage's."""
    trim = _libc_function("malloc_trim")
    if trim is not None:
        trim(0)
