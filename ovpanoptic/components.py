"""Interfaces that plugin components implement, and the records the registry keeps of them.

A component is created by a *factory* ``factory(config, context) -> component`` that a plugin hands
to a ``register_*`` hook. ``config`` is an instance of the component's frozen config dataclass
(filled from the preset and ``--set`` overrides); ``context`` is a :class:`ComponentContext`.
Factories are called lazily, on first use, and must not load models themselves: components load
their weights on their first call.

Rules every component follows (checked by :mod:`ovpanoptic.boundary`, in the product and in the
:mod:`ovpanoptic.testing` kit alike):

* Inputs are read-only: images are read-only views of ``(H, W, 3)`` uint8 RGB arrays, and the
  arrays of :class:`~ovpanoptic.types.ProposalSet` and :class:`~ovpanoptic.types.ClassScores` are
  read-only too. Copy (``np.array(image)``) before changing anything.
* Results are validated when they cross the boundary; a broken contract, or any exception that is
  not an :class:`~ovpanoptic.errors.OvpanopticError`, becomes a
  :class:`~ovpanoptic.errors.ComponentError` naming the plugin, the component and the call.
* Raise :class:`~ovpanoptic.errors.OvpanopticError` subclasses (``InputError``, ``WeightsError``,
  ``MissingDependencyError``, ...) with a message that names the fix for problems that are the
  user's to solve; they reach the user unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from .errors import AmbiguousNameError
from .types import ClassScores, PanopticResult, Prompt, ProposalSet, TrackMasks, Vocabulary

__all__ = [
    "KINDS",
    "Classifier",
    "ComponentContext",
    "BatchEncoder",
    "ComponentSpec",
    "Downloadable",
    "Exporter",
    "Finisher",
    "Fuser",
    "NameKeyer",
    "NameTable",
    "NoConfig",
    "OutputChecker",
    "VocabularyPreparer",
    "Progress",
    "PromptSegmenter",
    "ProposalGenerator",
    "QUALIFIER",
    "RegisterComponent",
    "RegisterPromptTemplates",
    "RegisterVocabulary",
    "RegisterVocabularyParser",
    "Refiner",
    "Tracker",
    "VocabularyParserSpec",
    "VocabularySpec",
]

#: ``progress(message, done, total)``: called by long-running work to report ``done`` of ``total``
#: steps (``total`` 0 when unknown), e.g. ``progress("sam2: point batches", 3, 16)``. Optional: a
#: component calls it only when it is not ``None``; it returns nothing and is cheap to call.
Progress = Callable[[str, int, int], None]

_T = TypeVar("_T")

#: Component kinds, with the name used in ``[pipeline]`` and in messages.
KINDS: dict[str, str] = {
    "proposal_generator": "proposal generator",
    "classifier": "classifier",
    "fuser": "fuser",
    "exporter": "exporter",
    "tracker": "tracker",
    "refiner": "refiner",
}


@dataclass(frozen=True)
class NoConfig:
    """Config class of a component that takes no options."""


class _LazyDevice:
    """The ``device`` field of :class:`ComponentContext`: stored as given, or, when given as
    ``None`` with a ``resolve_device`` callable, resolved on first read and then kept."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return "cpu"  # the dataclass default
        value = obj.__dict__.get(self.slot)
        if value is None:
            resolve = obj.__dict__.get("resolve_device")
            if resolve is None:
                raise ValueError("ComponentContext needs a device or a resolve_device callable")
            value = resolve()
            if not isinstance(value, str) or not value:
                raise ValueError(f"resolve_device must return a device string like 'cpu' or 'cuda', got {value!r}")
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value


@dataclass(frozen=True)
class ComponentContext:
    """Runtime facts handed to every component factory.

    :param device: resolved torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    :param cache_dir: a writable directory for caches (text embeddings, ...).
    :param offline: ``True`` when no network access may be attempted (``HF_HUB_OFFLINE=1``).
    :param prompt_templates: the registered prompt-template sets, by name.
    :param resolve_device: used only with ``device=None``: a callable returning the device, called on the
        first read of :attr:`device` (the pipeline passes one, so that components that never read
        the device, e.g. model-free ones, never make the process import torch to resolve
        ``auto``). Equality, ``dataclasses.replace``, copying and pickling read (resolve) it.
    :raises ValueError: neither ``device`` nor ``resolve_device``, or a device that is not a string.
    """

    device: str = _LazyDevice()  # type: ignore[assignment]
    cache_dir: Path = Path(".")
    offline: bool = False
    prompt_templates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    resolve_device: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = self.__dict__.get("_device")
        if given is not None and self.resolve_device is not None:  # e.g. dataclasses.replace of a resolved one
            object.__setattr__(self, "resolve_device", None)
        if given is None and self.resolve_device is None:
            raise ValueError("ComponentContext needs a device (e.g. 'cpu') or a resolve_device callable")
        if given is not None and (not isinstance(given, str) or not given):
            raise ValueError(f"device must be a device string like 'cpu' or 'cuda', got {given!r}")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled with the device resolved and without the callable (it may not pickle)."""
        state = dict(self.__dict__)
        state["_device"] = self.device
        state["resolve_device"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@runtime_checkable
class ProposalGenerator(Protocol):
    """Turns an image into class-agnostic mask proposals."""

    def generate(self, image: np.ndarray, *, progress: Progress | None = None) -> ProposalSet:
        """Propose masks for an image.

        :param image: ``(H, W, 3)`` uint8 RGB, read-only.
        :param progress: ``progress(message, done, total)`` or ``None``; call it during long work.
        :return: a :class:`ProposalSet`: ``masks`` ``(N, H, W)`` bool at the image's size, none
            empty; ``boxes_xyxy`` their tight boxes; ``scores`` ``(N,)`` finite float32.
            ``ProposalSet.from_masks(masks, scores)`` builds one.
        """
        ...


@runtime_checkable
class Classifier(Protocol):
    """Scores proposals against a vocabulary, in two steps so image work can be reused."""

    def prepare(self, image: np.ndarray, proposals: ProposalSet) -> Any:
        """Compute the image-dependent features of the proposals (cached by the pipeline per image
        and reused across vocabularies).

        :param image: ``(H, W, 3)`` uint8 RGB, read-only, the size of the proposals' masks.
        :param proposals: the generator's proposals.
        :return: anything :meth:`score` understands.
        """
        ...

    def score(self, prepared: Any, vocabulary: Vocabulary) -> ClassScores:
        """Score prepared proposals against the vocabulary's categories.

        :return: :class:`ClassScores` with one row per proposal and one column per category in
            vocabulary order (``category_ids=vocabulary.ids``); ``probs`` ``(N, C)`` float32,
            finite, >= 0, rows summing to at most 1 (the rest is "no object"); ``logits`` ``(N, C)``
            float32 without NaN or +inf. The same input gives the same scores.
        """
        ...


@runtime_checkable
class Fuser(Protocol):
    """Merges scored proposals into a non-overlapping panoptic result."""

    def fuse(self, proposals: ProposalSet, scores: ClassScores, vocabulary: Vocabulary) -> PanopticResult:
        """Fuse scored proposals into a panoptic result.

        :return: a :class:`PanopticResult` at the proposals' size over ``vocabulary`` itself (the
            same object or an equal one), built with ``PanopticResult.from_map``; its invariants
            (int32 map, unique ids, one segment per stuff class) are checked when it is built.
        """
        ...


@runtime_checkable
class Exporter(Protocol):
    """Writes a result to files; writes are atomic (temporary file, then rename)."""

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> Sequence[Path]:
        """Write the files for one image named after ``stem`` into ``outdir``; return their paths.

        :param image: ``(H, W, 3)`` uint8 RGB, read-only, the result's size.
        :param outdir: an existing folder; write only inside it, atomically
            (:func:`ovpanoptic.atomic.atomic_write_bytes`).
        :return: a list of the paths written (never ``None`` or a single string). When this raises,
            the files it created for this image are removed by the pipeline.
        """
        ...


@runtime_checkable
class Tracker(Protocol):
    """Carries objects from a video keyframe through the frames after it (``segment-video``).

    The video runner calls :meth:`track` once per keyframe window: ``frames[0]`` is the keyframe,
    where the objects are given as masks; the tracker follows them through ``frames[1:]``. Windows
    are independent calls (state from one window must not be needed in the next: the runner seeds
    every window afresh from the keyframe's result), so memory stays bounded by the window length.

    A tracker may set the class attribute ``bidirectional = True`` (absent means ``False``): then, unless
    ``TrackingOptions.bidirectional`` says otherwise, the runner also calls :meth:`track` on each window
    *reversed* (``frames[0]`` the next keyframe, seeded with its matched objects, the frames back to the
    previous keyframe after it) and fuses both passes (:func:`ovpanoptic.video.tracks.fuse_bidirectional`).
    Set it only when the tracker makes no assumption about the direction of time. (It is not a member of
    this protocol, so a tracker without it still conforms.)
    """

    def track(
        self, frames: Sequence[np.ndarray], seeds: TrackMasks, *, progress: Progress | None = None
    ) -> Iterable[TrackMasks]:
        """Follow the seeded objects through the window.

        :param frames: ``K + 1`` read-only ``(H, W, 3)`` uint8 RGB frames of one size, in time order
            (the runner's sampled frames: ``--every`` applies before), or in reverse time order for the
            backward pass of a tracker that sets ``bidirectional = True``.
        :param seeds: the objects on ``frames[0]``: track ids and ``(N, H, W)`` bool masks, none empty.
        :param progress: ``progress(message, done, total)`` or ``None``.
        :return: an iterable (a generator is best: the runner writes each frame as it comes) of one
            :class:`~ovpanoptic.types.TrackMasks` per frame of ``frames[1:]``, in order, at the frames'
            size; its ids are a subset of the seeds' ids (an object the tracker lost may be left out or
            given an empty mask). Masks of different objects may overlap: the runner resolves overlaps.
        """
        ...


@runtime_checkable
class Refiner(Protocol):
    """Post-processes a panoptic result before it is exported (mask clean-up, hole filling).

    Refiners named in ``pipeline.refiners`` run in that order after fusion (and after the result is
    scaled back to the image's size), on every result :meth:`~ovpanoptic.pipeline.Pipeline.segment`
    and ``segment-video`` produce, and on a loaded label set with ``ovpanoptic package --refine NAME``.
    A refiner cleans masks: it keeps each segment's id and category, may change its pixels (and
    score), may drop segments, and never adds one.
    """

    def refine(self, result: PanopticResult, image: np.ndarray | None) -> PanopticResult:
        """Return the refined result.

        :param result: the result to refine (its map is read-only: build a new one).
        :param image: the ``(H, W, 3)`` uint8 RGB image of the result (read-only, the result's
            size), or ``None`` where no image is at hand (packaging labels whose originals were not
            found); a refiner that needs it raises :class:`~ovpanoptic.errors.InputError` then.
        :return: a :class:`PanopticResult` of the same size over the same vocabulary
            (``PanopticResult.from_map(new_map, {id: (category_id, score)}, result.vocabulary)``),
            whose segments are among the input's, each with its category.
        """
        ...


@runtime_checkable
class VocabularyPreparer(Protocol):
    """Optional: a classifier whose scoring needs per-vocabulary work (text encoding) offers
    ``prepare_vocabulary``; the CLI calls it once before a batch, with a progress callback, so
    long encodings show progress and bad class names are refused before any image is read."""

    def prepare_vocabulary(self, vocabulary: Vocabulary, *, progress: Progress | None = None) -> None:
        """Do the vocabulary's work now (and cache it); raise ``VocabularyError`` for names the
        classifier cannot use."""
        ...


@runtime_checkable
class NameKeyer(Protocol):
    """Optional: a classifier that reads class names through its own text cleaning (CLIP's
    tokenizer folds case, spaces around punctuation, typographic quotes and HTML entities) offers
    ``name_key``, so the pipeline can refuse, before any image is read, two names of a vocabulary
    that it would read as the same text (one of them could never win). Without it, names are
    compared only as :class:`~ovpanoptic.types.Vocabulary` compares them (case, Unicode width and
    composition, spaces)."""

    def name_key(self, name: str) -> Hashable:
        """The form the classifier reads ``name`` in (the built-in ``clip``: its token ids): two
        names with equal keys are the same text to it. Load no weights for this (a tokenizer at
        most); it is called for every name of every vocabulary the pipeline checks."""
        ...


@runtime_checkable
class PromptSegmenter(Protocol):
    """Optional: a proposal generator that can also segment what a user points at (clicks, a box)
    offers ``segment_prompt``; :meth:`~ovpanoptic.pipeline.Pipeline.segment_prompt` calls it (the
    demo's labelling tool, one call per click). It runs often on one image: keep the image's
    expensive work (SAM's image embedding) on the instance, keyed by the image's content
    (:func:`ovpanoptic.imageio.image_digest`), for the last image or two, and reuse what
    :meth:`~ProposalGenerator.generate` computed for the same image."""

    def segment_prompt(self, image: np.ndarray, prompt: Prompt) -> ProposalSet:
        """Candidate masks of the object the prompt points at.

        :param image: ``(H, W, 3)`` uint8 RGB, read-only (the pipeline's working size, the same
            image :meth:`~ProposalGenerator.generate` gets).
        :param prompt: a :class:`~ovpanoptic.types.Prompt` in this image's pixels, inside it.
        :return: a :class:`ProposalSet` at the image's size (the contract of ``generate``: bool
            masks, none empty, tight boxes) with 1 to
            :data:`~ovpanoptic.constants.MAX_PROMPT_MASKS` (3) candidates, best first (``scores``
            not increasing; SAM's predicted IoU), or none when the prompt selects no pixel.
        :raises InputError: an image or prompt the generator cannot use, with the fix.
        """
        ...


@runtime_checkable
class BatchEncoder(Protocol):
    """Optional: a proposal generator or classifier whose image encoder can take several images in
    one forward pass offers ``encode_batch`` (the built-in ``sam2``: SAM 2's image encoder, through
    ``SAM2ImagePredictor.set_image_batch``; ``clip``: the dense pass, images of one input size
    together). With ``pipeline.batch_size`` above 1 the engines call
    :meth:`~ovpanoptic.pipeline.Pipeline.encode_batch` with the next images, then segment each one
    as usual: ``generate`` / ``prepare`` of an image encoded here use its kept encoding instead of
    running the encoder again, and drop it. On a GPU one pass over 8 images takes far less than 8
    passes over one.

    The contract: the results of ``generate`` / ``prepare`` are those the component gives without
    ``encode_batch``, up to the summation order of a batched operator (measured on a CPU: SAM 2's
    embeddings and CLIP ViT features the same bits, CLIP ConvNeXt features within 3e-7). Keep the encodings of the last call only, keyed by the image's content
    (:func:`ovpanoptic.imageio.image_digest`), and drop each when it is used or when the next call
    comes, so memory stays bounded by one batch. Leave out an image you cannot encode (one your
    ``generate`` / ``prepare`` would refuse): its own call then says why, and the others still go
    together. The pipeline calls it with images that are not in its own result cache; an exception
    here is not fatal (it is logged, each image is then encoded alone, and the component is not
    asked to batch again in that run).
    """

    def encode_batch(self, images: Sequence[np.ndarray]) -> None:
        """Run the image encoder on ``images`` together and keep each image's encoding for its next
        ``generate`` / ``prepare``.

        :param images: 2 to ``pipeline.batch_size`` images, each ``(H, W, 3)`` uint8 RGB,
            read-only, at the pipeline's working size (the arrays ``generate`` / ``prepare`` will
            get; sizes may differ between images).
        """
        ...


@runtime_checkable
class OutputChecker(Protocol):
    """Optional: an exporter that keeps files shared by all images of a folder (a combined JSON)
    offers ``check_output``, called before a batch writes anything."""

    def check_output(self, outdir: Path, vocabulary: Vocabulary) -> None:
        """Raise an :class:`~ovpanoptic.errors.OvpanopticError` saying why results over
        ``vocabulary`` cannot go into ``outdir`` (e.g. it holds results of another vocabulary, or
        the format cannot hold its classes). ``outdir`` may not exist yet (a new batch): then check
        the vocabulary alone."""
        ...


@runtime_checkable
class Finisher(Protocol):
    """Optional: an exporter that keeps a file shared by all images of a folder (a combined JSON)
    writes per-image parts in ``export`` and assembles the shared file in ``finish``, called once
    after a batch (and after :meth:`~ovpanoptic.pipeline.Pipeline.export`)."""

    def finish(self, outdir: Path, stems: Sequence[str] | None = None) -> Sequence[Path]:
        """Write the shared files from the parts of ``stems`` (the finished images, in input order;
        ``None``: every part in the folder); return their paths."""
        ...


@runtime_checkable
class Downloadable(Protocol):
    """Optional: a component with weights offers ``download`` (used by ``ovpanoptic download``)."""

    def download(self) -> Sequence[Path]:
        """Fetch the weights into the local cache (or find them there); return the local files."""
        ...


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component: how to build it and who provided it."""

    kind: str
    name: str
    factory: Callable[[Any, ComponentContext], Any]
    config_class: type = NoConfig
    description: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown component kind {self.kind!r}; kinds are {sorted(KINDS)}")
        if not isinstance(self.name, str) or not self.name or not self.name.replace("-", "_").isidentifier() or not self.name.isascii():
            raise ValueError(
                f"component name {self.name!r} is invalid: use ASCII letters, digits, '-' and '_', starting with a letter "
                "(names are written in --set KIND.NAME.KEY=VALUE)"
            )
        if not callable(self.factory):
            raise ValueError(
                f"the factory of {KINDS[self.kind]} {self.name!r} is a {type(self.factory).__name__} instance, which is "
                "not callable: pass the class or a function factory(config, context), not a built object"
            )
        if dataclasses.is_dataclass(self.config_class) and not isinstance(self.config_class, type):
            cls_name = type(self.config_class).__name__
            raise ValueError(
                f"config= of {KINDS[self.kind]} {self.name!r} is an instance ({cls_name}(...)): pass the dataclass "
                f"itself (config={cls_name})"
            )
        if not (dataclasses.is_dataclass(self.config_class) and isinstance(self.config_class, type)):
            raise ValueError(
                f"config= of {KINDS[self.kind]} {self.name!r} must be a frozen dataclass type, got {self.config_class!r}"
            )
        if not self.config_class.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise ValueError(f"config class {self.config_class.__name__} must be a frozen dataclass")


@dataclass(frozen=True)
class VocabularySpec:
    """A registered named vocabulary; ``loader`` is called when it is first used."""

    name: str
    loader: Callable[[], Vocabulary]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class VocabularyParserSpec:
    """A registered class-list syntax: lists starting with ``prefix`` go to ``parser``.

    ``parser(text, stuff, things)`` gets the class list with the prefix removed (stripped) and the
    raw ``--stuff`` / ``--things`` strings, and returns a :class:`Vocabulary`.
    """

    prefix: str
    parser: Callable[[str, str, str], Vocabulary]
    description: str = ""
    plugin: str = ""

    def __post_init__(self) -> None:
        p = self.prefix
        if not isinstance(p, str) or not p or p != p.strip() or any(ch.isspace() or ch in ",|" for ch in p):
            raise ValueError(
                f"prefix {p!r} is invalid: use a non-empty string without spaces, ',' or '|' (e.g. '@' or 'yaml:')"
            )
        if p[-1].isalnum():
            raise ValueError(f"prefix {p!r} must end with a symbol such as ':' or '@', so it cannot swallow class names")
        if not callable(self.parser):
            raise ValueError(f"the parser for prefix {p!r} is not callable")


#: Separates a plugin's name from a name it registered in a qualified name (``probe:cityscapes``).
QUALIFIER = ":"

_COUNT = {2: "two", 3: "three"}


class NameTable(Mapping[str, _T]):
    """Names registered by plugins (one table per component kind, vocabularies, template sets),
    resolved by one rule.

    * A name one plugin registered is looked up as itself (``cityscapes``).
    * Any registered name can also be looked up qualified by its plugin, ``PLUGIN:NAME``
      (``probe:cityscapes``).
    * A name two or more plugins registered is not an error when registered (a new built-in must
      not break installed plugins): looking it up alone raises :class:`AmbiguousNameError`, naming
      every plugin and the qualified names that pick one. Iterating yields such names qualified,
      so listings show each plugin's entry.

    :param what: what the names are, for messages (``"exporter"``, ``"vocabulary"``).
    :param how: how the user chooses one, for messages (``"--format "``, ``"--vocabulary "``).
    """

    def __init__(self, what: str, how: str) -> None:
        self.what = what
        self.how = how
        #: name -> plugin -> (value, the plugin described for messages)
        self._claims: dict[str, dict[str, tuple[_T, str]]] = {}

    def add(self, name: str, plugin: str, value: _T, described: str = "") -> None:
        """Record that ``plugin`` registered ``name`` (the caller refuses one plugin registering it twice)."""
        self._claims.setdefault(name, {})[plugin] = (value, described or f"plugin {plugin!r}")

    def mapped(self, fn: Callable[[_T], Any]) -> NameTable[Any]:
        """A table of the same names (and the same rule) whose values are ``fn(value)``."""
        table: NameTable[Any] = NameTable(self.what, self.how)
        table._claims = {name: {p: (fn(v), d) for p, (v, d) in by.items()} for name, by in self._claims.items()}
        return table

    def entries(self) -> Iterator[tuple[str, str, _T]]:
        """``(name, plugin, value)`` for every registration, ambiguous names included."""
        for name, by in self._claims.items():
            for plugin in sorted(by):
                yield name, plugin, by[plugin][0]

    def claimants(self, name: str) -> dict[str, _T]:
        """plugin -> value for every plugin that registered ``name`` (empty when none did)."""
        return {plugin: value for plugin, (value, _) in self._claims.get(name, {}).items()}

    def ambiguous(self) -> dict[str, tuple[str, ...]]:
        """name -> the plugins that registered it, for the names more than one plugin registered."""
        return {name: tuple(sorted(by)) for name, by in sorted(self._claims.items()) if len(by) > 1}

    def drop_plugin(self, plugin: str) -> None:
        """Forget everything ``plugin`` registered."""
        for name in list(self._claims):
            self._claims[name].pop(plugin, None)
            if not self._claims[name]:
                del self._claims[name]

    def ambiguity(self, name: str) -> str:
        """The message for using ``name`` alone when several plugins registered it."""
        by = self._claims[name]
        plugins = sorted(by)
        described = " and ".join(by[p][1] for p in plugins)
        choices = " or ".join(f"{self.how}{p}{QUALIFIER}{name}" for p in plugins)
        return (
            f"{self.what} {name!r} is registered by {_COUNT.get(len(plugins), len(plugins))} plugins: {described}. Choose one by its qualified "
            f"name PLUGIN{QUALIFIER}NAME ({choices}), or block all but one with --disable-plugin PLUGIN"
        )

    def _resolve(self, key: str) -> tuple[_T, bool] | None:
        """``(value, ambiguous)`` for ``key``, or ``None`` when nothing has that name."""
        by = self._claims.get(key)
        if by:
            if len(by) > 1:
                return next(iter(by.values()))[0], True
            return next(iter(by.values()))[0], False
        start = key.find(QUALIFIER)
        while start > 0:  # a plugin name may hold the separator too: try every split
            plugin, name = key[:start], key[start + 1 :]
            hit = self._claims.get(name, {}).get(plugin)
            if hit is not None:
                return hit[0], False
            start = key.find(QUALIFIER, start + 1)
        return None

    def __getitem__(self, key: str) -> _T:
        found = self._resolve(key) if isinstance(key, str) else None
        if found is None:
            raise KeyError(key)
        if found[1]:
            raise AmbiguousNameError(self.ambiguity(key))
        return found[0]

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` names something (an ambiguous name does: using it raises)."""
        return isinstance(key, str) and self._resolve(key) is not None

    def __iter__(self) -> Iterator[str]:
        for name, by in self._claims.items():
            if len(by) == 1:
                yield name
            else:
                yield from (f"{plugin}{QUALIFIER}{name}" for plugin in sorted(by))

    def __len__(self) -> int:
        return sum(len(by) for by in self._claims.values())

    def __repr__(self) -> str:
        return f"NameTable({self.what!r}, {dict(self.items())!r})"


class RegisterComponent(Protocol):
    """The callback handed to ``register_proposal_generators`` and the other component hooks."""

    def __call__(
        self,
        name: str,
        factory: Callable[[Any, ComponentContext], Any],
        *,
        config: type = NoConfig,
        description: str = "",
    ) -> None:
        """Register ``factory`` under ``name``; ``config`` is its frozen config dataclass."""
        ...


class RegisterPromptTemplates(Protocol):
    """The callback handed to ``register_prompt_templates``."""

    def __call__(self, name: str, templates: Sequence[str], *, description: str = "") -> None:
        """Register a set of templates, each containing ``{}`` for the class name."""
        ...


class RegisterVocabulary(Protocol):
    """The callback handed to ``register_vocabularies``."""

    def __call__(self, name: str, loader: Callable[[], Vocabulary], *, description: str = "") -> None:
        """Register a named vocabulary, built by ``loader()`` on first use."""
        ...


class RegisterVocabularyParser(Protocol):
    """The callback handed to ``register_vocabulary_parsers``."""

    def __call__(self, prefix: str, parser: Callable[[str, str, str], Vocabulary], *, description: str = "") -> None:
        """Send class lists starting with ``prefix`` to ``parser(text, stuff, things)``."""
        ...
