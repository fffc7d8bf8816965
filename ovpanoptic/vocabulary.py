"""Turning typed class names into a :class:`~ovpanoptic.types.Vocabulary`.

Syntax (CLI ``--classes``, ``--stuff``, ``--things``, the demo's text boxes, the Python API):

* classes are separated by commas or new lines: ``"person, car, traffic light"``;
* ``|`` separates synonyms of one class, the first name being the display name:
  ``"tv|television|monitor"``;
* a class named in ``stuff`` is stuff, one named in ``things`` is a thing; a name that appears only
  there is appended to the vocabulary;
* any other class is stuff when one of its names is in the stuff lexicon (COCO-Stuff, COCO-panoptic
  and ADE20K stuff names, see :class:`StuffLexicon`), otherwise a thing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import VocabularyError
from .types import INVISIBLE_CHARACTERS, Category, Vocabulary, normalize_name

__all__ = [
    "ClassEntry",
    "ClassLists",
    "StuffLexicon",
    "build_vocabulary",
    "check_distinct_names",
    "format_class_lists",
    "load_vocabulary_file",
    "split_class_list",
]

_SEPARATORS = re.compile(r"[,\n]")


@dataclass(frozen=True)
class ClassEntry:
    """One parsed entry of a class list: a display name and its synonyms."""

    name: str
    synonyms: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.synonyms)


def split_class_list(text: str, what: str = "--classes") -> list[ClassEntry]:
    """Split ``"person, tv|television"`` into entries; empty names are errors naming their position."""
    if not isinstance(text, str):
        raise VocabularyError(f"{what} must be a string of comma-separated class names")
    # Separators, white space and new lines at the ends are not entries ("car, tree," and a trailing
    # Enter in a text box mean "car, tree"); a pasted Windows line end is one line end.
    text = text.translate(INVISIBLE_CHARACTERS).replace("\r\n", "\n").replace("\r", "\n").strip(" \t\n,")
    if not text:
        return []
    # One class per line may end its lines with commas, and may have blank lines: a comma next to a
    # line break, and empty lines, separate nothing more. Two commas in a row are still an error.
    text = re.sub(r"[ \t]*,[ \t]*(?=\n)|(?<=\n)[ \t]*,", "", text)
    text = re.sub(r"\n[ \t]*(?=\n)", "", text)
    entries = []
    for index, raw in enumerate(_SEPARATORS.split(text), start=1):
        names = [normalize_name(part) for part in raw.split("|")]
        if not raw.strip():
            seen = " | ".join(repr(part.strip()) for part in _SEPARATORS.split(text))
            raise VocabularyError(
                f"class {index} of {what} is empty (two commas in a row): {what} was read as the entries "
                f"{seen}. Remove the extra comma."
            )
        if any(not n for n in names):
            raise VocabularyError(
                f"class {index} of {what} ({raw.strip()!r}) has an empty synonym: write synonyms as "
                "'name|other name' with no empty part"
            )
        entries.append(ClassEntry(names[0], tuple(names[1:])))
    return entries


def _normalise(name: str) -> str:
    name = name.casefold().strip()
    for suffix in ("-merged", "-other", "-stuff"):
        name = name.removesuffix(suffix)
    return re.sub(r"[\s_\-]+", " ", name).strip()


@dataclass(frozen=True)
class StuffLexicon:
    """A set of names that denote amorphous regions ("stuff") rather than countable objects.

    Lookup ignores case, ``-``/``_``/space differences, COCO suffixes (``-merged``, ``-other``,
    ``-stuff``) and a plural ``s``.
    """

    names: frozenset[str]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> StuffLexicon:
        return cls(frozenset(_normalise(n) for n in names if n.strip()))

    @classmethod
    def default(cls) -> StuffLexicon:
        """The lexicon shipped with ovpanoptic (``ovpanoptic/data/stuff_lexicon.txt``)."""
        text = resources.files("ovpanoptic").joinpath("data/stuff_lexicon.txt").read_text("utf-8")
        return cls.from_names(line for line in text.splitlines() if not line.lstrip().startswith("#"))

    def is_stuff(self, name: str) -> bool:
        key = _normalise(name)
        if key in self.names:
            return True
        return key.endswith("s") and key[:-1] in self.names


def build_vocabulary(
    classes: str = "",
    stuff: str = "",
    things: str = "",
    *,
    lexicon: StuffLexicon | None = None,
    name: str = "custom",
) -> Vocabulary:
    """Build a vocabulary from typed class lists (see the module docstring for the syntax).

    :param classes: the classes, in order.
    :param stuff: classes forced to be stuff (appended when not in ``classes``).
    :param things: classes forced to be things (appended when not in ``classes``).
    :param lexicon: decides thing/stuff for unflagged classes; default :meth:`StuffLexicon.default`.
    :raises VocabularyError: on empty, duplicate or over-long names, or a name flagged both ways.
    """
    class_entries = split_class_list(classes, "--classes")
    stuff_entries = split_class_list(stuff, "--stuff")
    thing_entries = split_class_list(things, "--things")
    if not (class_entries or stuff_entries or thing_entries):
        raise VocabularyError(
            "no class names given: type comma-separated names, e.g. --classes \"person, car, road\" "
            "(or choose a named vocabulary with --vocabulary)"
        )
    stuff_keys = {n.casefold() for e in stuff_entries for n in e.names}  # names are normalised already
    for e in thing_entries:
        both = [n for n in e.names if n.casefold() in stuff_keys]
        if both:
            raise VocabularyError(f"{both[0]!r} is listed in both --stuff and --things: keep it in one")

    # Merge flagged entries into the class list (same display name, case-insensitive).
    ordered: list[tuple[ClassEntry, bool | None]] = [(e, None) for e in class_entries]
    for flagged, isthing in ((stuff_entries, False), (thing_entries, True)):
        for entry in flagged:
            for i, (existing, _) in enumerate(ordered):
                if existing.name.casefold() == entry.name.casefold():
                    extra = tuple(s for s in entry.synonyms if s.casefold() not in {n.casefold() for n in existing.names})
                    ordered[i] = (ClassEntry(existing.name, existing.synonyms + extra), isthing)
                    break
            else:
                ordered.append((entry, isthing))

    lex = lexicon if lexicon is not None else StuffLexicon.default()
    categories = []
    for idx, (entry, flag) in enumerate(ordered, start=1):
        isthing = flag if flag is not None else not any(lex.is_stuff(n) for n in entry.names)
        categories.append(Category(id=idx, name=entry.name, isthing=isthing, synonyms=entry.synonyms))
    return Vocabulary(tuple(categories), name=name)


def check_distinct_names(vocabulary: Vocabulary, keys: Mapping[str, Hashable], reader: str) -> None:
    """Refuse two names of ``vocabulary`` that ``reader`` reads as the same text.

    :class:`~ovpanoptic.types.Vocabulary` already refuses names equal up to case, Unicode width and
    composition and spaces; a classifier may fold more (CLIP's tokenizer reads ``t-shirt`` and
    ``t - shirt``, ``man's`` and ``man’s``, ``&`` and ``&amp;`` alike), and of two names it reads
    alike the second could never win.

    :param keys: every name and synonym of the vocabulary -> the form ``reader`` reads it in (a
        classifier's :meth:`~ovpanoptic.components.NameKeyer.name_key`).
    :param reader: who reads the names, for the message (``"the classifier 'clip'"``).
    :raises VocabularyError: ``class name ... appears twice``, naming both entries.
    """

    def entry(name: str, category: str) -> str:
        return repr(name) if name == category else f"{name!r} (a synonym of {category!r})"

    seen: dict[Hashable, tuple[str, str]] = {}
    for category in vocabulary:
        for name in category.names:
            key = keys[name]
            if key in seen:
                first, owner = seen[key]
                raise VocabularyError(
                    f"class name {name!r} appears twice (as {entry(first, owner)} and {entry(name, category.name)}): "
                    f"{reader} reads both names as the same text, so one of them could never win: remove or rename one"
                )
            seen[key] = (name, category.name)


@dataclass(frozen=True)
class ClassLists:
    """A vocabulary written in the typed syntax: ``build_vocabulary(classes, stuff, things)``.

    :param classes: every class in order, synonyms after ``|`` (``"person, tv|television"``).
    :param stuff: the stuff classes' display names.
    :param things: the things the stuff lexicon would take for stuff (so they stay things).
    """

    classes: str
    stuff: str
    things: str


def format_class_lists(vocabulary: Vocabulary, *, lexicon: StuffLexicon | None = None) -> ClassLists:
    """Write a vocabulary as the typed class lists that parse back to the same names, synonyms,
    order and thing/stuff flags (ids become 1..N, colours and descriptions are not written), so a
    user can see and edit a named vocabulary as text (the demo's boxes, ``--classes``). Names
    cannot contain the syntax's separators (:class:`~ovpanoptic.types.Category` refuses them).
    """
    lex = lexicon if lexicon is not None else StuffLexicon.default()
    classes = ", ".join("|".join(c.names) for c in vocabulary)
    stuff = ", ".join(c.name for c in vocabulary.stuff)
    things = ", ".join(c.name for c in vocabulary.things if any(lex.is_stuff(n) for n in c.names))
    return ClassLists(classes, stuff, things)


def load_vocabulary_file(path: str | Path) -> Vocabulary:
    """Load a vocabulary JSON file (the schema of ``ovpanoptic/data/vocabularies/*.json``)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise VocabularyError(f"vocabulary file {p} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VocabularyError(f"cannot read vocabulary file {p}: {exc}") from None
    try:
        return Vocabulary.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise VocabularyError(f"vocabulary file {p} is malformed: {exc}") from None
