"""The pipeline with fake components registered as real plugins."""

from __future__ import annotations

import numpy as np
import pytest

import ovpanoptic
from ovpanoptic import hookimpl
from ovpanoptic.config import Config
from ovpanoptic.device import resolve_device
from ovpanoptic.errors import ComponentNotFoundError, InputError, PluginError
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import FakeComponentsPlugin, TilesGenerator, registry_with

from conftest import FAKE_OVERRIDES

FAKES = {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint", "exporters": ["fake-json"]}


def fake_pipeline(**pipeline):
    config = Config.from_dict({"pipeline": {**FAKES, **pipeline}})
    return Pipeline(config, registry=registry_with(FakeComponentsPlugin()), device="cpu")


def described(result):
    return [(s.id, result.category_of(s).name, s.isthing, round(s.score, 4), s.area, s.bbox_xyxy) for s in result.segments]


def test_segment_gives_exact_ids_areas_and_boxes(shapes_image):
    result = fake_pipeline().segment(shapes_image, "person, road")
    # Tiles 0..3 (24x32 each) cycle person, road, person, road; road tiles merge into one segment.
    assert described(result) == [
        (1, "person", True, 0.9, 768, (0, 0, 32, 24)),
        (2, "road", False, 0.9, 1536, (32, 0, 64, 48)),
        (3, "person", True, 0.9, 768, (0, 24, 32, 48)),
    ]
    assert result.panoptic_map.dtype == np.int32 and result.image_size == (48, 64)
    assert set(result.timings) == {"proposals", "features", "classify", "fuse", "resize", "total"}


def test_new_vocabulary_on_same_image_reuses_proposals_and_features(shapes_image):
    pipe = fake_pipeline()
    pipe.segment(shapes_image, "person, road")
    second = pipe.segment(shapes_image.copy(), "car, sky, tree")
    gen = pipe.component("proposal_generator")
    clf = pipe.component("classifier")
    assert (gen.calls, clf.prepare_calls, clf.score_calls) == (1, 1, 2)
    assert second.timings["proposals"] == 0.0 and second.timings["features"] == 0.0
    assert [result_name for result_name in (second.category_of(s).name for s in second.segments)] == ["car", "sky", "tree", "car"]
    other = shapes_image.copy()
    other[0, 0] = 0
    pipe.segment(other, "car")
    assert (gen.calls, clf.prepare_calls) == (2, 2)


def test_cache_is_bounded(shapes_image):
    pipe = fake_pipeline(cache_images=1)
    a, b = shapes_image, shapes_image[::-1].copy()
    pipe.segment(a, "person")
    pipe.segment(b, "person")
    pipe.segment(a, "person")
    assert pipe.component("proposal_generator").calls == 3


def test_constructing_a_pipeline_loads_nothing():
    built = []

    class Counting:
        @hookimpl
        def register_proposal_generators(self, register):
            def factory(config, context):
                built.append(context.device)
                return TilesGenerator()

            register("counting", factory)

    reg = registry_with(FakeComponentsPlugin(), Counting())
    config = Config.from_dict({"pipeline": {**FAKES, "proposal_generator": "counting"}})
    pipe = Pipeline(config, registry=reg, device="cpu")
    assert built == []
    pipe.vocabulary("person")
    assert built == []
    pipe.segment(np.zeros((8, 8, 3), np.uint8), "person")
    pipe.segment(np.ones((8, 8, 3), np.uint8), "person")
    assert built == ["cpu"]


def test_large_images_are_processed_small_and_returned_at_full_size(shapes_image):
    pipe = fake_pipeline(max_side=32)
    result = pipe.segment(shapes_image, "person, road")
    assert result.image_size == (48, 64)
    # Work image is 24x32; its 12x16 tiles scale back to exactly the 24x32 tiles of the original.
    assert described(result) == described(fake_pipeline().segment(shapes_image, "person, road"))


def test_missing_default_component_is_a_clear_error(shapes_image):
    pipe = Pipeline(registry=registry_with(FakeComponentsPlugin(), disable=["clip"]), device="cpu")
    with pytest.raises(ComponentNotFoundError, match="classifier 'clip'.*Available: cycling, oracle"):
        pipe.segment(shapes_image, "person")


def test_component_that_breaks_the_protocol_is_reported():
    class Bad:
        @hookimpl
        def register_fusers(self, register):
            register("bad", lambda config, context: object())

    reg = registry_with(FakeComponentsPlugin(), Bad())
    pipe = Pipeline(Config.from_dict({"pipeline": {**FAKES, "fuser": "bad"}}), registry=reg, device="cpu")
    with pytest.raises(PluginError, match=r"^fuser 'bad' from plugin 'Bad' \(registered in code\) failed in its factory: the factory built a 'object' object, which has no fuse\(\). A fuser must have fuse\(proposals, scores, vocabulary\). This is a fault in the plugin: report it to its authors; meanwhile choose another fuser with --set pipeline.fuser=NAME, or block the plugin with --disable-plugin Bad$"):
        pipe.component("fuser")


def test_named_vocabulary_and_exclusive_arguments():
    pipe = fake_pipeline()
    assert len(pipe.vocabulary(name="coco")) == 133
    assert pipe.vocabulary(["person", "tv|television"]).by_id(2).synonyms == ("television",)
    with pytest.raises(InputError, match="either a named vocabulary or class names"):
        pipe.vocabulary("person", name="coco")


def test_bad_images_are_clear_errors():
    pipe = fake_pipeline()
    with pytest.raises(InputError, match="empty"):
        pipe.segment(np.zeros((0, 5, 3), np.uint8), "person")
    with pytest.raises(InputError, match="got shape"):
        pipe.segment(np.zeros((4, 5, 2), np.uint8), "person")
    with pytest.raises(InputError, match="expected an image path, a PIL image or a numpy array, got list"):
        pipe.segment([[1]], "person")


def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available here"):
        resolve_device("cuda")
    assert fake_pipeline().device == "cpu"


def test_top_level_segment_uses_installed_plugins(with_plugins, shapes_image):
    result = ovpanoptic.segment(shapes_image, "person, road", overrides=FAKE_OVERRIDES, device="cpu")
    assert [s.area for s in result.segments] == [768, 1536, 768]


def test_export_writes_with_named_exporters(shapes_image, tmp_path):
    pipe = fake_pipeline()
    result = pipe.segment(shapes_image, "person, road")
    paths = pipe.export(result, shapes_image, tmp_path / "out", "img")
    assert [p.name for p in paths] == ["img.fake.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img.fake.json"]
