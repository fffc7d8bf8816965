"""Built-in plugin: the shipped named vocabularies and the comma/pipe class-list parser."""

from __future__ import annotations

from functools import partial
from importlib import resources

from ..components import RegisterVocabulary
from ..hookspecs import hookimpl
from ..types import Vocabulary
from ..vocabulary import build_vocabulary, load_vocabulary_file

#: (name, file in ovpanoptic/data/vocabularies, description)
SHIPPED: tuple[tuple[str, str, str], ...] = (
    ("coco", "coco.json", "COCO panoptic: 133 classes (80 things, 53 stuff), official ids"),
    ("ade20k", "ade20k.json", "ADE20K: 150 classes (100 things, 50 stuff)"),
    ("tabletop", "tabletop.json", "Robotics tabletop manipulation: 9 classes"),
    ("indoor-navigation", "indoor_navigation.json", "Robotics indoor navigation: 7 classes"),
    ("cityscapes", "cityscapes.json", "Cityscapes: 19 evaluation classes (8 things, 11 stuff), Cityscapes label ids"),
)


def _load_shipped(file_name: str, name: str) -> Vocabulary:
    with resources.as_file(resources.files("ovpanoptic").joinpath("data/vocabularies", file_name)) as path:
        vocab = load_vocabulary_file(path)
    return Vocabulary(vocab.categories, name=name)


@hookimpl
def register_vocabularies(register: RegisterVocabulary) -> None:
    """Register the shipped vocabularies; each file is read on first use."""
    for name, file_name, description in SHIPPED:
        register(name, partial(_load_shipped, file_name, name), description=description)


@hookimpl(trylast=True)
def parse_vocabulary(classes: str, stuff: str, things: str) -> Vocabulary:
    """Parse ``"person, tv|television"`` lists (see :mod:`ovpanoptic.vocabulary`)."""
    return build_vocabulary(classes, stuff, things)
