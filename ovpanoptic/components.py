"""Interfaces that plugin components implement, and the records the registry keeps of them.

A component is created by a *factory* ``factory(config, context) -> component`` that a plugin hands
to a ``register_*`` hook. ``config`` is an instance of the component's frozen config dataclass
(filled from the preset and ``--set`` overrides); ``context`` is a :class:`ComponentContext`.
Factories are called lazily, on first use, and must not load models themselves: components load
their weights on their first call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .types import ClassScores, PanopticResult, ProposalSet, Vocabulary

__all__ = [
    "KINDS",
    "Classifier",
    "ComponentContext",
    "ComponentSpec",
    "Downloadable",
    "Exporter",
    "Fuser",
    "NoConfig",
    "Progress",
    "ProposalGenerator",
    "RegisterComponent",
    "RegisterPromptTemplates",
    "RegisterVocabulary",
    "VocabularySpec",
]

#: ``progress(message, done, total)``: called by long-running work; ``total`` may be 0 if unknown.
Progress = Callable[[str, int, int], None]

#: Component kinds, with the name used in ``[pipeline]`` and in messages.
KINDS: dict[str, str] = {
    "proposal_generator": "proposal generator",
    "classifier": "classifier",
    "fuser": "fuser",
    "exporter": "exporter",
}


@dataclass(frozen=True)
class NoConfig:
    """Config class of a component that takes no options."""


@dataclass(frozen=True)
class ComponentContext:
    """Runtime facts handed to every component factory.

    :param device: resolved torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    :param cache_dir: a writable directory for caches (text embeddings, ...).
    :param offline: ``True`` when no network access may be attempted (``HF_HUB_OFFLINE=1``).
    :param prompt_templates: the registered prompt-template sets, by name.
    """

    device: str = "cpu"
    cache_dir: Path = Path(".")
    offline: bool = False
    prompt_templates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@runtime_checkable
class ProposalGenerator(Protocol):
    """Turns an image into class-agnostic mask proposals."""

    def generate(self, image: np.ndarray, *, progress: Progress | None = None) -> ProposalSet:
        """Propose masks for an ``(H, W, 3)`` uint8 RGB image; masks are at the image's size."""
        ...


@runtime_checkable
class Classifier(Protocol):
    """Scores proposals against a vocabulary, in two steps so image work can be reused."""

    def prepare(self, image: np.ndarray, proposals: ProposalSet) -> Any:
        """Compute the image-dependent features of the proposals (reused across vocabularies)."""
        ...

    def score(self, prepared: Any, vocabulary: Vocabulary) -> ClassScores:
        """Score prepared proposals against the vocabulary's categories."""
        ...


@runtime_checkable
class Fuser(Protocol):
    """Merges scored proposals into a non-overlapping panoptic result."""

    def fuse(self, proposals: ProposalSet, scores: ClassScores, vocabulary: Vocabulary) -> PanopticResult:
        ...


@runtime_checkable
class Exporter(Protocol):
    """Writes a result to files; writes are atomic (temporary file, then rename)."""

    def export(self, result: PanopticResult, image: np.ndarray, outdir: Path, stem: str) -> Sequence[Path]:
        """Write the files for one image named after ``stem`` into ``outdir``; return their paths."""
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
        if not isinstance(self.name, str) or not self.name or not self.name.replace("-", "_").replace(".", "_").isidentifier():
            raise ValueError(
                f"component name {self.name!r} is invalid: use letters, digits, '-', '_' or '.'"
            )
        if not callable(self.factory):
            raise ValueError(f"factory of {KINDS[self.kind]} {self.name!r} is not callable")
        if not (dataclasses.is_dataclass(self.config_class) and isinstance(self.config_class, type)):
            raise ValueError(f"config class of {KINDS[self.kind]} {self.name!r} must be a dataclass type")
        if not self.config_class.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise ValueError(f"config class {self.config_class.__name__} must be a frozen dataclass")


@dataclass(frozen=True)
class VocabularySpec:
    """A registered named vocabulary; ``loader`` is called when it is first used."""

    name: str
    loader: Callable[[], Vocabulary]
    description: str = ""
    plugin: str = ""


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
