"""The refiner plugin kind and the built-in ``cleanup`` refiner: exact pixels on built cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovpanoptic import hookimpl
from ovpanoptic.builtins.refiners import CleanupConfig, CleanupRefiner
from ovpanoptic.cli import main
from ovpanoptic.config import Config, load_config
from ovpanoptic.errors import AmbiguousNameError, ComponentError, ComponentNotFoundError, ConfigError
from ovpanoptic.evaluation import read_coco_panoptic
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import ConformanceError, FakeComponentsPlugin, build_component, check_plugin, check_refiner, registry_with
from ovpanoptic.types import Category, PanopticResult, Vocabulary

VOCAB = Vocabulary(
    (Category(1, "box", True), Category(2, "floor", False), Category(3, "wall", False), Category(4, "cup", True)), name="t"
)
LABELS = {1: (1, 0.9), 2: (2, 0.8), 3: (3, 0.7), 4: (4, 0.6)}
KIT = Vocabulary((Category(1, "square", True), Category(2, "bar", True), Category(3, "background", False)), name="kit")
FAKES = {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint", "exporters": ["fake-json"]}


def result_of(pm: np.ndarray) -> PanopticResult:
    return PanopticResult.from_map(pm.astype(np.int32), {k: v for k, v in LABELS.items() if (pm == k).any()}, VOCAB)


def clean(pm: np.ndarray, **options) -> np.ndarray:
    return np.asarray(CleanupRefiner(CleanupConfig(**options)).refine(result_of(pm), None).panoptic_map)


def halves() -> np.ndarray:
    """Floor (2) left of column 12, wall (3) from it: a straight boundary."""
    pm = np.zeros((20, 24), np.int32)
    pm[:, :12] = 2
    pm[:, 12:] = 3
    return pm


def box_on_void() -> np.ndarray:
    pm = np.zeros((20, 24), np.int32)
    pm[5:15, 5:15] = 1
    return pm


def test_a_one_pixel_spur_into_void_is_removed() -> None:
    pm = box_on_void()
    pm[9, 15:18] = 1  # 3 px long, 1 px wide
    assert np.array_equal(clean(pm), box_on_void())


def test_a_spur_into_another_segment_goes_to_that_segment_or_to_void() -> None:
    pm = halves()
    pm[6:12, 3:9] = 4  # a cup on the floor
    expected = pm.copy()
    pm[8, 9:12] = 4  # a 1 px spur of the cup poking into the floor
    assert np.array_equal(clean(pm), expected)
    void = expected.copy()
    void[8, 9:12] = 0
    assert np.array_equal(clean(pm, freed="void"), void)


def test_a_one_pixel_hole_is_filled_and_a_one_pixel_island_goes_to_its_surroundings() -> None:
    pm = box_on_void()
    pm[9, 9] = 0  # a void hole
    assert np.array_equal(clean(pm), box_on_void())
    pm = halves()
    pm[10, 5] = 4  # a one-pixel cup in the floor: opened away, the cup vanishes
    result = CleanupRefiner(CleanupConfig()).refine(result_of(pm), None)
    assert np.array_equal(result.panoptic_map, halves())
    assert [s.id for s in result.segments] == [2, 3]


def test_a_hole_near_the_edge_of_a_small_object_does_not_cut_its_corner() -> None:
    pm = np.zeros((12, 12), np.int32)
    pm[3:9, 3:9] = 1  # 6 x 6
    expected = pm.copy()
    pm[5, 5] = 0  # two pixels from the object's edge: an opening first would cut its corner
    assert np.array_equal(clean(pm), expected)


def test_a_two_pixel_island_is_dropped_and_the_island_area_rule() -> None:
    pm = box_on_void()
    pm[2, 20:22] = 1  # a 2-pixel second part of the box
    assert np.array_equal(clean(pm), box_on_void())
    pm = box_on_void()
    pm[1:4, 18:21] = 1  # a 3 x 3 part (9 px) survives the opening: the island rule decides
    assert np.array_equal(clean(pm, min_island_area=9), pm)
    assert np.array_equal(clean(pm, min_island_area=10), box_on_void())
    assert np.array_equal(clean(pm, min_island_area=10, open_close=False), box_on_void())
    small = np.zeros((20, 24), np.int32)
    small[1:4, 18:21] = 1  # a thing keeps its largest part whatever its size
    assert np.array_equal(clean(small, min_island_area=10), small)
    stuff = halves()
    stuff[1:4, 18:21] = 2  # a 3 x 3 floor island inside the wall: stuff drops it, the wall takes it back
    assert np.array_equal(clean(stuff, min_island_area=10), halves())


def test_a_straight_boundary_is_pixel_identical_and_ids_categories_scores_kept() -> None:
    pm = halves()
    pm[3:17, 16:22] = 1  # a box on the wall, 4 px of wall between it and the floor
    before = result_of(pm)
    noisy = pm.copy()
    noisy[10, 18] = 0  # a hole in the box
    noisy[4, 5] = 4  # a speck of cup on the floor
    noisy[16, 7:10] = 3  # a 3-pixel speck of wall on the floor
    out = CleanupRefiner(CleanupConfig()).refine(result_of(noisy), None)
    assert np.array_equal(out.panoptic_map, pm)
    assert np.array_equal(out.panoptic_map[:, 10:14], halves()[:, 10:14])  # the floor/wall boundary
    assert [(s.id, s.category_id, s.score, s.area, s.bbox_xyxy) for s in out.segments] == [
        (s.id, s.category_id, s.score, s.area, s.bbox_xyxy) for s in before.segments
    ]
    assert CleanupRefiner(CleanupConfig()).refine(before, None) is before  # nothing to clean: the same result


def test_a_segment_filling_the_image_is_kept_at_the_image_edges() -> None:
    pm = np.full((9, 11), 2, np.int32)
    assert np.array_equal(clean(pm), pm)


def test_cleanup_config_is_checked() -> None:
    with pytest.raises(ValueError, match="min_island_area must be an integer >= 0"):
        CleanupConfig(min_island_area=-1)
    registry = registry_with()
    with pytest.raises(ConfigError, match="refiner.cleanup.freed: 'nearest' is not one of 'neighbour', 'void'"):
        build_component(registry, "refiner", "cleanup", {"freed": "nearest"})


# -- the plugin kind -----------------------------------------------------------------------------


class Relabel:
    """Gives the first thing segment the other thing class."""

    def __init__(self, config, context):
        pass

    def refine(self, result, image):
        first = next(s for s in result.segments if s.isthing)
        other = next(c.id for c in result.vocabulary.things if c.id != first.category_id)
        labels = {s.id: (s.category_id, s.score) for s in result.segments} | {first.id: (other, first.score)}
        return PanopticResult.from_map(np.array(result.panoptic_map), labels, result.vocabulary)


class Grow:
    def __init__(self, config, context):
        pass

    def refine(self, result, image):
        pm = np.array(result.panoptic_map)
        pm[0, 0] = 99
        labels = {s.id: (s.category_id, s.score) for s in result.segments} | {99: (result.vocabulary.ids[0], 1.0)}
        return PanopticResult.from_map(pm, labels, result.vocabulary)


class Crash:
    def __init__(self, config, context):
        pass

    def refine(self, result, image):
        raise RuntimeError("boom")


class BadRefiners:
    @hookimpl
    def register_refiners(self, register):
        register("relabel", Relabel)
        register("grow", Grow)
        register("crash", Crash)


def fake_pipeline(*plugins, **pipeline) -> Pipeline:
    config = Config.from_dict({"pipeline": {**FAKES, **pipeline}})
    return Pipeline(config, registry=registry_with(FakeComponentsPlugin(), *plugins), device="cpu")


def test_pipeline_applies_refiners_after_fusion_in_order(shapes_image) -> None:
    plain = fake_pipeline().segment(shapes_image, "square, bar, background")
    refined = fake_pipeline(refiners=["cleanup"]).segment(shapes_image, "square, bar, background")
    expected = CleanupRefiner(CleanupConfig()).refine(plain, None)
    assert np.array_equal(refined.panoptic_map, expected.panoptic_map)
    assert "refine" in refined.timings and "refine" not in plain.timings
    assert fake_pipeline(refiners="cleanup").config.pipeline.refiners == ("cleanup",)
    assert Config().pipeline.refiners == ()  # off by default


def test_refiner_faults_name_the_plugin_and_the_fix(shapes_image) -> None:
    for name, problem in (
        ("relabel", "it changed the category of segment"),
        ("grow", "it added segments [99]"),
        ("crash", "raised RuntimeError: boom"),
    ):
        pipe = fake_pipeline(BadRefiners(), refiners=[name])
        with pytest.raises(ComponentError) as info:
            pipe.segment(shapes_image, KIT)
        message = str(info.value)
        assert f"refiner '{name}' from plugin 'BadRefiners'" in message and problem in message, message
        assert f"leave '{name}' out of pipeline.refiners, or block the plugin with --disable-plugin BadRefiners" in message


def test_unknown_duplicate_and_ambiguous_refiner_names() -> None:
    with pytest.raises(ComponentNotFoundError, match="refiner 'cleanpu' is not provided.*Did you mean 'cleanup'.*--set pipeline.refiners=NAME"):
        fake_pipeline(refiners=["cleanpu"]).check()
    with pytest.raises(ConfigError, match="pipeline.refiners names 'cleanup' twice"):
        fake_pipeline(refiners=["cleanup", "cleanup"])

    class Other:
        @hookimpl
        def register_refiners(self, register):
            register("cleanup", Relabel)

    with pytest.raises(AmbiguousNameError, match="--set pipeline.refiners=Other:cleanup or --set pipeline.refiners=refiners:cleanup"):
        fake_pipeline(Other(), refiners=["cleanup"]).check()
    fake_pipeline(Other(), refiners=["refiners:cleanup"]).check()


def test_testing_kit_checks_refiners(shapes_image) -> None:
    registry = registry_with(BadRefiners())
    result = fake_pipeline().segment(shapes_image, KIT)
    check_refiner(build_component(registry, "refiner", "cleanup"), result, shapes_image)
    with pytest.raises(ConformanceError, match="it changed the category of segment"):
        check_refiner(build_component(registry, "refiner", "relabel"), result, shapes_image)
    with pytest.raises(AssertionError, match="it added segments"):
        check_refiner(Grow(None, None), result)


def test_check_plugin_runs_the_refiners_of_a_plugin(tmp_path: Path) -> None:
    from ovpanoptic.builtins import refiners

    assert check_plugin(refiners, tmp_path) == {"refiner": ["cleanup"]}
    with pytest.raises(ConformanceError, match="refiner 'crash'"):  # its refiners are checked in name order
        check_plugin(BadRefiners(), tmp_path)


def test_clean_preset_turns_cleanup_on_and_plugins_lists_it(capsys) -> None:
    assert load_config("clean").pipeline.refiners == ("cleanup",)
    assert main(["plugins"]) == 0
    assert "provides refiner: cleanup" in capsys.readouterr().out


def _coco(folder: Path, pm: np.ndarray, segments: list[dict]) -> Path:
    (folder / "panoptic").mkdir(parents=True)
    rgb = np.stack([pm % 256, pm // 256 % 256, pm // 65536], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "panoptic" / "a.png")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": pm.shape[1], "height": pm.shape[0]}],
        "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": segments}],
        "categories": [{"id": 1, "name": "box", "isthing": 1}, {"id": 2, "name": "floor", "isthing": 0}],
    }
    (folder / "panoptic.json").write_text(json.dumps(data))
    return folder / "panoptic.json"


def test_package_refine_cleans_the_labels_before_writing(tmp_path: Path, capsys) -> None:
    pm = np.full((20, 24), 300, np.int64)  # floor, a segment id above 255
    pm[5:15, 5:15] = 7
    clean_map = pm.copy()
    pm[9, 15:18] = 7  # spur into the floor
    pm[9, 9] = 300  # a one-pixel floor island in the box
    segments = [
        {"id": 7, "category_id": 1, "iscrowd": 0, "area": int((pm == 7).sum())},
        {"id": 300, "category_id": 2, "iscrowd": 0, "area": int((pm == 300).sum())},
    ]
    source = _coco(tmp_path / "src", pm, segments)
    out = tmp_path / "dataset"
    assert main(["package", str(source), "--refine", "cleanup", "--splits", "100,0,0", "--no-images", "-o", str(out)]) == 0
    copy = read_coco_panoptic(out / "annotations" / "panoptic_train.json").read("a")
    assert np.array_equal(copy.panoptic_map, clean_map)
    assert {s["id"]: s["area"] for s in copy.segments} == {7: 100, 300: 380}
    assert main(["package", str(source), "--refine", "clenup", "--splits", "100,0,0", "-o", str(tmp_path / "d2")]) == 2
    assert "refiner 'clenup' is not provided" in capsys.readouterr().err
    assert not (tmp_path / "d2").exists()
