"""Typed class lists, the stuff lexicon and the shipped vocabularies."""

from __future__ import annotations

import json

import pytest

from ovpanoptic.errors import VocabularyError
from ovpanoptic.testing import registry_with
from ovpanoptic.vocabulary import StuffLexicon, build_vocabulary, split_class_list


def summary(v):
    return [(c.id, c.name, c.isthing, c.synonyms) for c in v.categories]


def test_classes_with_synonyms_and_lexicon_decisions():
    v = build_vocabulary("person, car, tv|television, road, Sky")
    assert summary(v) == [
        (1, "person", True, ()),
        (2, "car", True, ()),
        (3, "tv", True, ("television",)),
        (4, "road", False, ()),
        (5, "Sky", False, ()),
    ]


def test_stuff_and_things_flags_override_the_lexicon_and_append():
    v = build_vocabulary("person, floor, shelf", stuff="shelf|shelving, grass", things="floor")
    assert summary(v) == [
        (1, "person", True, ()),
        (2, "floor", True, ()),
        (3, "shelf", False, ("shelving",)),
        (4, "grass", False, ()),
    ]


def test_newlines_separate_classes_too():
    assert build_vocabulary("person\npallet").names == ("person", "pallet")


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ("", "no class names given"),
        ("person,,car", r"class 2 of --classes is empty \(two commas in a row\): --classes was read as the entries 'person' \| '' \| 'car'\. Remove the extra comma\."),
        ("person, \t,car\n", r"class 2 of --classes is empty .* the entries 'person' \| '' \| 'car'"),
        ("tv|", r"class 1 of --classes \('tv\|'\) has an empty synonym"),
        ("person, Person", "'Person' appears twice"),
        ("x" * 201, "201 characters long; the limit is 200"),
    ],
)
def test_bad_class_lists_give_clear_errors(classes, message):
    with pytest.raises(VocabularyError, match=message):
        build_vocabulary(classes)


def test_flagged_both_ways_is_an_error():
    with pytest.raises(VocabularyError, match="'floor' is listed in both --stuff and --things"):
        build_vocabulary("floor", stuff="floor", things="floor")


def test_split_class_list_positions():
    assert [e.names for e in split_class_list(" a | b , c ")] == [("a", "b"), ("c",)]


def test_lexicon_normalises_case_suffixes_separators_and_plurals():
    lex = StuffLexicon.default()
    for name in ("sky", "Sky", "wall-other-merged", "floor_wood", "roads", "snow", "pavement"):
        assert lex.is_stuff(name), name
    for name in ("person", "forklift", "pallet", "door", "table", "dining table"):
        assert not lex.is_stuff(name), name
    custom = StuffLexicon.from_names(["pallet"])
    assert [c.isthing for c in build_vocabulary("pallet, sky", lexicon=custom).categories] == [False, True]


def test_coco_vocabulary_matches_the_official_categories(coco_sample):
    official = json.loads((coco_sample / "categories.json").read_text())
    v = registry_with().vocabulary("coco")
    assert len(v) == 133 and len(v.things) == 80 and len(v.stuff) == 53
    assert [(c.id, c.name, c.isthing, c.color) for c in v.categories] == [
        (c["id"], c["name"], bool(c["isthing"]), tuple(c["color"])) for c in official
    ]
    assert "floor" in v.by_id(190).synonyms  # floor-other-merged reads as "floor" in prompts


@pytest.mark.parametrize(
    ("name", "size", "things"),
    [("ade20k", 150, 100), ("tabletop", 9, 7), ("indoor-navigation", 7, 3), ("cityscapes", 19, 8)],
)
def test_shipped_vocabularies_load(name, size, things):
    v = registry_with().vocabulary(name)
    assert v.name == name and len(v) == size and len(v.things) == things
    assert all(c.color is not None for c in v.categories)


def test_robotics_taxonomies_have_expected_classes_and_prompts():
    reg = registry_with()
    tabletop = reg.vocabulary("tabletop")
    assert tabletop.names == (
        "target_object", "support_surface", "container", "obstacle_rigid", "obstacle_deformable",
        "robot_arm", "gripper", "human_hand", "background",
    )
    assert [c.name for c in tabletop.stuff] == ["support_surface", "background"]
    nav = reg.vocabulary("indoor-navigation")
    assert nav.names == ("traversable_ground", "obstacle", "wall", "door", "dynamic_obstacle", "ramp", "stairs")
    assert {c.name for c in nav.things} == {"obstacle", "door", "dynamic_obstacle"}
    assert all(len(c.synonyms) >= 2 and c.description for c in (*tabletop.categories, *nav.categories))


def test_unknown_named_vocabulary_suggests_close_match():
    with pytest.raises(VocabularyError, match="no vocabulary named 'cocoo'. Did you mean 'coco'"):
        registry_with().vocabulary("cocoo")


@pytest.mark.parametrize(
    "classes",
    ["car, tree, street lamp\n", "car, tree, street lamp,\n", ", car, tree, street lamp,", "\n\ncar,\r\ntree\r\nstreet lamp\r\n", " car\n tree \n\n street lamp ,\n\n"],
)
def test_separators_and_new_lines_at_the_ends_are_not_entries(classes):
    """A trailing Enter in the demo's box, a trailing comma, Windows line ends: the same three classes."""
    assert build_vocabulary(classes).names == ("car", "tree", "street lamp")


@pytest.mark.parametrize("name", ["ade20k", "cityscapes", "coco", "indoor-navigation", "tabletop"])
def test_named_vocabularies_round_trip_through_the_typed_syntax(name):
    """What the demo shows in its boxes for a named vocabulary parses back to the same classes."""
    from ovpanoptic.plugins import Registry
    from ovpanoptic.vocabulary import format_class_lists

    vocab = Registry.create().vocabulary(name)
    lists = format_class_lists(vocab)
    again = build_vocabulary(lists.classes, lists.stuff, lists.things)
    assert [(c.names, c.isthing) for c in again] == [(c.names, c.isthing) for c in vocab]
    assert again.ids == tuple(range(1, len(vocab) + 1))


def test_format_class_lists_keeps_a_thing_the_lexicon_calls_stuff():
    from ovpanoptic.types import Category, Vocabulary
    from ovpanoptic.vocabulary import ClassLists, format_class_lists

    vocab = Vocabulary((Category(1, "floor", True), Category(7, "wall", False, ("partition",)), Category(9, "cup", True)))
    assert format_class_lists(vocab) == ClassLists("floor, wall|partition, cup", "wall", "floor")
