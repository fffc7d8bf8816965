"""Text side of the ``clip`` classifier: prompt ensembles and the text-embedding cache.

A class name is encoded once ever per (model, weights, template set): the template-averaged,
L2-normalised embedding of each name is kept in memory and, when a cache directory is given, in
``<cache>/clip-text/<architecture>-<weights sha256>-<template set>-<templates sha256>/<name sha256>.npy``.
The weights' SHA-256 is computed once per file and remembered in
``<cache>/clip-text/weights-sha256.json`` (keyed by path, size and modification time).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ...atomic import atomic_write_bytes, atomic_write_text
from ...components import Progress
from ...errors import VocabularyError
from ...types import Category
from ...weights import sha256_of

__all__ = ["TextEmbeddings", "text_cache_dir", "token_counter", "weights_sha256"]

log = logging.getLogger(__name__)

#: ``encode(prompts) -> (len(prompts), D)`` float32 embeddings (not necessarily normalised).
Encoder = Callable[[list[str]], np.ndarray]

#: ``count(prompt) -> tokens`` the text encoder reads for a prompt, start and end tokens included.
TokenCounter = Callable[[str], int]


def token_counter(tokenizer: object) -> TokenCounter | None:
    """How many tokens ``tokenizer`` (an open_clip tokenizer) makes of a prompt, or ``None`` when
    it cannot tell (the check is then skipped)."""
    encode = getattr(tokenizer, "encode", None)
    if callable(encode) and hasattr(tokenizer, "sot_token_id") and hasattr(tokenizer, "eot_token_id"):
        return lambda text: len(encode(text)) + 2  # SimpleTokenizer: BPE tokens plus start and end
    inner = getattr(tokenizer, "tokenizer", None)  # HFTokenizer: the Hugging Face tokenizer adds its own
    if callable(inner):
        return lambda text: len(inner(text)["input_ids"])
    return None

_SIDECAR = "weights-sha256.json"


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_sha256(path: Path, root: Path) -> str:
    """SHA-256 of a checkpoint, remembered in ``root/weights-sha256.json`` by path, size and mtime.

    Hashing a 600 MB file takes seconds, so it happens once per file version; a file replaced in
    place (other size or mtime) is hashed again.
    """
    resolved = path.resolve()
    stat = resolved.stat()
    key = str(resolved)
    sidecar = root / _SIDECAR
    try:
        known = json.loads(sidecar.read_text("utf-8"))
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        digest = entry.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            return digest
    log.info("hashing %s (once per checkpoint file)", resolved)
    digest = sha256_of(resolved)
    known[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(sidecar, json.dumps(known, indent=1, sort_keys=True))
    except OSError as exc:
        log.warning("cannot remember the checkpoint hash in %s: %s", sidecar, exc)
    return digest


def text_cache_dir(root: Path, architecture: str, weights_digest: str, template_set: str, templates: Sequence[str]) -> Path:
    """The folder holding the name embeddings of one (model, weights, template set)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{architecture}-{weights_digest[:16]}-{template_set}")
    return root / f"{slug}-{_sha256_text(chr(10).join(templates))[:12]}"


class TextEmbeddings:
    """Template-averaged, normalised text embeddings of names, cached in memory and on disk.

    :param encode: the text encoder, called with at most ``batch_size`` prompts at a time, all of
        one template.
    :param templates: prompt templates, each with one ``{}``.
    :param batch_size: prompts (names of one template) per ``encode`` call.
    :param directory: on-disk cache folder (see :func:`text_cache_dir`); ``None`` for memory only.
    :param count_tokens: counts a prompt's tokens (see :func:`token_counter`); with
        ``context_length``, a name whose longest prompt does not fit is refused instead of being
        cut (cut names would share one embedding).
    :param context_length: tokens the text encoder reads (CLIP: 77).
    """

    def __init__(
        self,
        encode: Encoder,
        templates: Sequence[str],
        *,
        batch_size: int = 256,
        directory: Path | None = None,
        count_tokens: TokenCounter | None = None,
        context_length: int | None = None,
    ) -> None:
        self._encode = encode
        self.templates = tuple(templates)
        self.batch_size = batch_size
        self.directory = directory
        self.count_tokens = count_tokens
        self.context_length = context_length
        self._memory: dict[str, np.ndarray] = {}
        self.dim: int | None = None

    @staticmethod
    def _file(directory: Path, name: str) -> Path:
        return directory / f"{_sha256_text(name)[:32]}.npy"

    def _from_disk(self, name: str) -> np.ndarray | None:
        if self.directory is None:
            return None
        path = self._file(self.directory, name)
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cached text embedding %s: %s", path, exc)
            return None
        if vec.ndim != 1 or vec.dtype != np.float32 or not np.isfinite(vec).all() or (self.dim and vec.shape[0] != self.dim):
            log.warning("ignoring malformed cached text embedding %s", path)
            return None
        return vec

    def _to_disk(self, name: str, vec: np.ndarray) -> None:
        if self.directory is None:
            return
        buf = io.BytesIO()
        np.save(buf, vec, allow_pickle=False)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self._file(self.directory, name), buf.getvalue())
        except OSError as exc:
            log.warning("cannot write the text-embedding cache in %s: %s", self.directory, exc)

    def check_lengths(self, names: Sequence[str]) -> dict[str, int]:
        """Refuse names whose longest prompt has more tokens than the encoder reads.

        :return: each name's longest prompt, in tokens (empty when tokens cannot be counted).
        :raises VocabularyError: naming the class, its token count and the limit; or a name with
            no readable tokens (all such names would share one embedding).
        """
        if self.count_tokens is None or not self.context_length:
            return {}
        lengths: dict[str, int] = {}
        for name in names:
            if self.count_tokens(name) <= 2:  # only the start and end tokens: nothing readable
                raise VocabularyError(
                    f"class name {name!r} has no text the CLIP tokenizer can read (it becomes an empty prompt, the same "
                    "for every such name): use letters or words"
                )
            prompts = [t.format(name) for t in self.templates] or [name]
            tokens, prompt = max((self.count_tokens(p), p) for p in prompts)
            if tokens > self.context_length:
                raise VocabularyError(
                    f"class name {name[:40]!r}{'...' if len(name) > 40 else ''} is too long for the text encoder: the prompt "
                    f"{prompt[:60]!r}{'...' if len(prompt) > 60 else ''} is {tokens} tokens and CLIP reads {self.context_length} "
                    "(start and end included); a longer name would be cut, and two cut names could not be told apart. "
                    "Shorten it (details can go in a synonym)"
                )
            lengths[name] = tokens
        return lengths

    def names(self, names: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """``(len(names), D)`` float32 embeddings; encodes only names never seen before.

        :param progress: called as ``progress("encoding class names", done, total)`` while new
            names are encoded (each finished chunk is saved to the cache at once, so an
            interrupted run keeps what it encoded).
        :raises VocabularyError: a new name does not fit the encoder (see :meth:`check_lengths`).
        """
        missing: list[str] = []
        for name in dict.fromkeys(names):
            if name in self._memory:
                continue
            vec = self._from_disk(name)
            if vec is None:
                missing.append(name)
            else:
                self._memory[name] = vec
                self.dim = vec.shape[0]
        if missing:
            lengths = self.check_lengths(missing)
            self._encode_names(missing, progress, lengths)
        if not names:
            return np.zeros((0, self.dim or 0), np.float32)
        return np.stack([self._memory[n] for n in names])

    def _encode_names(self, names: list[str], progress: Progress | None = None, lengths: Mapping[str, int] | None = None) -> None:
        log.info(
            "encoding %d new class names (%d prompts); they are cached%s",
            len(names),
            len(names) * len(self.templates),
            f" in {self.directory}" if self.directory is not None else " in memory",
        )
        if not self.templates:
            return
        # One encode call per template, for up to batch_size names: the prompts of a call share
        # the template's words before the name, which a causal text tower computes once (see
        # text_tower); a name's embedding is the normalised sum over its templates.
        per_chunk = max(1, self.batch_size)
        if lengths:
            # Names of similar length share a chunk, so a text encoder that stops at each prompt's
            # end (see text_tower) groups them with little padding.
            names = sorted(names, key=lambda n: lengths[n])
        message = "encoding class names"
        if progress is not None:
            progress(message, 0, len(names))
        for start in range(0, len(names), per_chunk):
            chunk = names[start : start + per_chunk]
            per_template = [
                _l2_normalise(np.asarray(self._encode([template.format(name) for name in chunk]), np.float32))
                for template in self.templates
            ]
            vectors = _l2_normalise(np.sum(per_template, axis=0))
            self.dim = vectors.shape[1]
            for name, vec in zip(chunk, vectors):
                self._memory[name] = vec
                self._to_disk(name, vec)
            if progress is not None:
                progress(message, start + len(chunk), len(names))
        log.debug("encoded %d new names (%d prompts)", len(names), len(names) * len(self.templates))

    def categories(self, categories: Sequence[Category], progress: Progress | None = None) -> np.ndarray:
        """``(C, D)``: each category's names (name and synonyms) averaged, then normalised."""
        all_names = [n for c in categories for n in c.names]
        vectors = self.names(all_names, progress)
        out = np.zeros((len(categories), vectors.shape[1]), np.float32)
        row = 0
        for j, cat in enumerate(categories):
            k = len(cat.names)
            out[j] = vectors[row : row + k].mean(axis=0)
            row += k
        return _l2_normalise(out)
