"""Hook specifications of ovpanoptic.

Plugins implement these with :data:`hookimpl`::

    from ovpanoptic import hookimpl

    @hookimpl
    def register_fusers(register):
        register("my-fuser", MyFuser, config=MyFuserConfig, description="...")

Every hook here is documented in ``docs/plugins.md`` and exercised by a test
(``tests/test_hookspecs.py`` fails otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping

import pluggy

from .components import RegisterComponent, RegisterPromptTemplates, RegisterVocabulary, RegisterVocabularyParser
from .types import PanopticResult, Vocabulary

#: Marks the specifications below.
hookspec = pluggy.HookspecMarker("ovpanoptic")
#: Marks a plugin's implementation of a hook.
hookimpl = pluggy.HookimplMarker("ovpanoptic")


@hookspec
def register_vocabularies(register: RegisterVocabulary) -> None:
    """Register named vocabularies.

    :param register: call ``register(name, loader, description=...)`` once per vocabulary;
        ``loader()`` returns a :class:`~ovpanoptic.types.Vocabulary` and is called on first use.
    :return: nothing. One plugin registering a name twice is a start-up error; a name two plugins
        register is a start-up warning, refused only where it is used (``--vocabulary NAME``),
        naming both, while ``--vocabulary PLUGIN:NAME`` picks one (see "Names" in docs/plugins.md).
    """


@hookspec
def register_proposal_generators(register: RegisterComponent) -> None:
    """Register class-agnostic mask proposal generators.

    :param register: call ``register(name, factory, config=ConfigDataclass, description=...)``;
        ``factory(config, context)`` returns an object with
        ``generate(image, *, progress=None) -> ProposalSet``.
    :return: nothing. Names are per kind; one plugin registering a name twice is a start-up
        error. A name another plugin registers too (say, a built-in added after your plugin) is
        a start-up warning and refused only where it is chosen, naming both plugins; the
        qualified name ``PLUGIN:NAME`` picks one (see "Names" in docs/plugins.md). The same holds
        for every ``register_*`` component hook below.
    """


@hookspec
def register_classifiers(register: RegisterComponent) -> None:
    """Register proposal classifiers.

    :param register: as for :func:`register_proposal_generators`; the built object has
        ``prepare(image, proposals) -> features`` (image work, reused across vocabularies) and
        ``score(features, vocabulary) -> ClassScores``.
    :return: nothing.
    """


@hookspec
def register_fusers(register: RegisterComponent) -> None:
    """Register panoptic fusers.

    :param register: as for :func:`register_proposal_generators`; the built object has
        ``fuse(proposals, scores, vocabulary) -> PanopticResult``.
    :return: nothing.
    """


@hookspec
def register_exporters(register: RegisterComponent) -> None:
    """Register result exporters, selected with ``--format NAME``.

    :param register: as for :func:`register_proposal_generators`; the built object has
        ``export(result, image, outdir, stem) -> list[Path]`` and writes atomically.
    :return: nothing.
    """


@hookspec
def register_trackers(register: RegisterComponent) -> None:
    """Register video trackers, selected with ``pipeline.tracker`` (``segment-video --tracker NAME``).

    :param register: as for :func:`register_proposal_generators`; the built object has
        ``track(frames, seeds, *, progress=None) -> Iterable[TrackMasks]``
        (:class:`~ovpanoptic.components.Tracker`): given a keyframe's objects as masks, it yields
        their masks in each following frame of the window.
    :return: nothing.
    """


@hookspec
def register_refiners(register: RegisterComponent) -> None:
    """Register result refiners, applied in the order ``pipeline.refiners`` lists them (default: none).

    :param register: as for :func:`register_proposal_generators`; the built object has
        ``refine(result, image) -> PanopticResult`` (:class:`~ovpanoptic.components.Refiner`): it
        post-processes a panoptic result before export, keeping each segment's id and category,
        and may drop segments but never add one. ``image`` is the result's RGB image, or ``None``
        where none is at hand (``ovpanoptic package --refine NAME`` without the original images).
    :return: nothing.
    """


@hookspec
def register_prompt_templates(register: RegisterPromptTemplates) -> None:
    """Register sets of text-prompt templates for text-embedding classifiers.

    :param register: call ``register(name, templates, description=...)``; ``templates`` is a
        sequence of strings containing ``{}`` where the class name goes (``"a photo of a {}."``).
        Classifiers pick a set by name in their config.
    :return: nothing. One plugin registering a set name twice is a start-up error; a set name two
        plugins register is a start-up warning, refused only where a classifier reads it, naming
        both, while ``PLUGIN:NAME`` picks one.
    """


@hookspec
def register_vocabulary_parsers(register: RegisterVocabularyParser) -> None:
    """Register class-list syntaxes by prefix (``@FILE``, ``yaml:FILE``, ...).

    :param register: call ``register(prefix, parser, description=...)``; a class list that starts
        with ``prefix`` goes to ``parser(text, stuff, things)`` with the prefix removed, which
        returns a :class:`~ovpanoptic.types.Vocabulary` or raises
        :class:`~ovpanoptic.errors.VocabularyError`. The longest matching prefix wins; a prefix
        registered by two plugins is a start-up warning and a class list using it is refused.
    :return: nothing.
    """


@hookspec
def parse_vocabulary(classes: str, stuff: str, things: str) -> Vocabulary | None:
    """Turn what a user typed into a vocabulary, for syntaxes a prefix cannot describe.

    Called with the raw ``--classes``, ``--stuff`` and ``--things`` strings (empty when not given),
    only when no registered prefix matches (see :func:`register_vocabulary_parsers`). Every
    implementation is asked, in plugin-name order; at most one may claim the input: two claims are
    an error naming both plugins, so the result never depends on install order. Implementations
    marked ``trylast`` are fallbacks, asked in turn only when nobody claimed the input; the built-in
    comma/``|`` parser is one.

    :param classes: the class list as typed.
    :param stuff: names flagged as stuff.
    :param things: names flagged as things.
    :return: a :class:`~ovpanoptic.types.Vocabulary`, or ``None`` for input that is not this
        plugin's.
    :raises ovpanoptic.errors.VocabularyError: when the input is meant for this plugin but invalid.
    """


@hookspec
def image_segmented(source: str, result: PanopticResult, timings: Mapping[str, float]) -> None:
    """Observe every segmented image (logging, metrics, custom side outputs).

    :param source: where the image came from (a file path, or ``"<array>"`` for in-memory images).
    :param result: the panoptic result.
    :param timings: seconds per stage, as in ``result.timings``.
    :return: nothing; return values are ignored. An observer that raises is logged as a warning
        naming the plugin, and the run goes on.
    """
