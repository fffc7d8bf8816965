"""Plugins whose loading or registration goes wrong, one mistake each."""

from __future__ import annotations

from ovpanoptic import Category, Vocabulary, hookimpl
from ovpanoptic.testing import TilesConfig, TilesGenerator


class _Raises:
    @hookimpl
    def register_fusers(self, register):
        raise RuntimeError("the plugin's own bug")


class _Positional:
    @hookimpl
    def register_proposal_generators(self, register):
        register("positional-tiles", TilesGenerator, TilesConfig)


class _Keyword:
    @hookimpl
    def register_proposal_generators(self, register):
        register("keyword-tiles", TilesGenerator, cfg=TilesConfig)


class _ConfigInstance:
    @hookimpl
    def register_proposal_generators(self, register):
        register("instance-tiles", TilesGenerator, config=TilesConfig())


class _Twice:
    @hookimpl
    def register_proposal_generators(self, register):
        register("twice-tiles", TilesGenerator)
        register("twice-tiles", TilesGenerator)


class PluginClass:
    """The entry point names this class instead of an instance."""

    @hookimpl
    def register_proposal_generators(self, register):
        register("class-tiles", TilesGenerator)


def _broken_loader() -> Vocabulary:
    raise KeyError("categories")


class _VocabularyLoader:
    @hookimpl
    def register_vocabularies(self, register):
        register("broken-vocabulary", _broken_loader, description="its loader raises")


def _at_parser(text: str, stuff: str, things: str) -> Vocabulary:
    return Vocabulary((Category(1, text or "at", True),), name="at")


class _AtParser:
    @hookimpl
    def register_vocabulary_parsers(self, register):
        register("@", _at_parser, description="claims '@' too")


class _Greedy:
    """A parse_vocabulary hook that claims every input (it should return None for others')."""

    @hookimpl
    def parse_vocabulary(self, classes, stuff, things):
        return Vocabulary((Category(1, "greedy", True),), name="greedy")


class _Observer:
    @hookimpl
    def image_segmented(self, source, result, timings):
        raise ZeroDivisionError("observer bug")


class _Misspelt:
    @hookimpl
    def register_exporter(self, register):  # the hook is register_exporters
        pass


class _ClipNamesake:
    @hookimpl
    def register_exporters(self, register):
        pass


raises_in_register = _Raises()
positional_config = _Positional()
wrong_keyword = _Keyword()
config_instance = _ConfigInstance()
registers_twice = _Twice()
vocabulary_loader_raises = _VocabularyLoader()
at_parser_a = _AtParser()
at_parser_b = _AtParser()
greedy_parser_a = _Greedy()
greedy_parser_b = _Greedy()
raising_observer = _Observer()
clip_namesake = _ClipNamesake()
misspelt_hook = _Misspelt()
