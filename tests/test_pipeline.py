"""The pipeline with fake components registered as real plugins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ovpanoptic
from ovpanoptic import hookimpl
from ovpanoptic.config import Config
from ovpanoptic.device import resolve_device
from ovpanoptic.errors import ComponentError, ComponentNotFoundError, InputError, PluginError, VocabularyError
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import CyclingClassifier, CyclingConfig, FakeComponentsPlugin, TilesGenerator, registry_with
from ovpanoptic.types import Category, Prompt, Vocabulary

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


def test_segment_prompt_with_the_fake_gives_exact_masks(shapes_image):
    pipe = fake_pipeline()
    # A box rounded half up to columns and rows 8..23: exactly the red square.
    box = pipe.segment_prompt(shapes_image, Prompt(box_xyxy=(7.5, 8.2, 24.4, 23.5)))
    assert len(box) == 1 and box.areas.tolist() == [256] and box.boxes_xyxy.tolist() == [[8, 8, 24, 24]]
    np.testing.assert_array_equal(box.masks[0], (shapes_image == (220, 30, 30)).all(axis=2))
    assert box.scores.tolist() == [1.0]
    # 2x2 tiles of 24x32 px: clicks in tiles 0 and 1 select both, a negative click removes tile 1.
    both = pipe.segment_prompt(shapes_image, Prompt([[5, 5], [40, 5]], [1, 1]))
    assert both.areas.tolist() == [1536] and both.boxes_xyxy.tolist() == [[0, 0, 64, 24]]
    less = pipe.segment_prompt(shapes_image, Prompt([[5, 5], [40, 5], [63, 23]], [1, 1, 0]))
    assert less.areas.tolist() == [768] and less.boxes_xyxy.tolist() == [[0, 0, 32, 24]]
    nothing = pipe.segment_prompt(shapes_image, Prompt([[5, 5], [6, 6]], [1, 0]))
    assert len(nothing) == 0 and nothing.image_size == (48, 64)
    gen = pipe.component("proposal_generator")
    assert (gen.prompt_calls, gen.calls) == (4, 0)  # no proposals were generated for it


def test_segment_prompt_scales_to_the_working_size_and_back(shapes_image):
    big = shapes_image.repeat(2, axis=0).repeat(2, axis=1)  # 96x128, worked on at 48x64
    pipe = fake_pipeline(max_side=64)
    even = pipe.segment_prompt(big, Prompt(box_xyxy=(20, 30, 100, 70)))
    assert even.image_size == (96, 128)
    assert even.areas.tolist() == [80 * 40] and even.boxes_xyxy.tolist() == [[20, 30, 100, 70]]
    # (21, 31, 101, 71) is (10.5, 15.5, 50.5, 35.5) at the working size, rounded half up to
    # (11, 16, 51, 36): the same area, one original pixel further right and down.
    odd = pipe.segment_prompt(big, Prompt(box_xyxy=(21, 31, 101, 71)))
    assert odd.areas.tolist() == [80 * 40] and odd.boxes_xyxy.tolist() == [[22, 32, 102, 72]]
    corner = pipe.segment_prompt(big, Prompt([[127.5, 95.5]], [1]))  # the last pixel: tile 3
    assert corner.boxes_xyxy.tolist() == [[64, 48, 128, 96]] and corner.areas.tolist() == [48 * 64]
    assert pipe.component("proposal_generator").prompt_calls == 3


class PlainGenerator:
    """A generator without segment_prompt."""

    def __init__(self, config=None, context=None):
        self.tiles = TilesGenerator()

    def generate(self, image, *, progress=None):
        return self.tiles.generate(image)


class PlainPlugin:
    @hookimpl
    def register_proposal_generators(self, register):
        register("plain", PlainGenerator)


def test_segment_prompt_errors_name_the_fix(shapes_image):
    pipe = fake_pipeline()
    with pytest.raises(InputError, match=r"^prompt point 0 \(x=64, y=0\) lies outside the 64 x 48 \(width x height\) image"):
        pipe.segment_prompt(shapes_image, Prompt([[64, 0]], [1]))
    with pytest.raises(InputError, match=r"the prompt box \(0, 0, 65, 10\) reaches outside the 64 x 48"):
        pipe.segment_prompt(shapes_image, Prompt(box_xyxy=(0, 0, 65, 10)))
    with pytest.raises(InputError, match=r"^prompt must be an ovpanoptic.Prompt, got dict: build one with Prompt\(points_xy=\[\[x, y\]\], point_labels=\[1\]\) or Prompt\(box_xyxy=\(x0, y0, x1, y1\)\)$"):
        pipe.segment_prompt(shapes_image, {"box": (0, 0, 5, 5)})
    config = Config.from_dict({"pipeline": {**FAKES, "proposal_generator": "plain"}})
    plain = Pipeline(config, registry=registry_with(FakeComponentsPlugin(), PlainPlugin()), device="cpu")
    with pytest.raises(
        InputError,
        match=r"^proposal generator 'plain' cannot segment clicks or boxes \(it has no segment_prompt\(\)\): choose one that can, "
        r"e.g. --set pipeline.proposal_generator=sam2, or a preset that uses sam2$",
    ):
        plain.segment_prompt(shapes_image, Prompt(box_xyxy=(0, 0, 5, 5)))
    assert plain.segment(shapes_image, "person").image_size == (48, 64)  # it still segments


# -- a classifier says how it reads class names (issue 27) ----------------------------------------


class KeyingPlugin:
    """A third-party classifier (the fakes' cycling one) that reads names without digits, plus two
    whose ``name_key`` breaks its contract."""

    @hookimpl
    def register_classifiers(self, register):
        class DigitBlind(CyclingClassifier):
            def name_key(self, name):
                return "".join(ch for ch in name.casefold() if not ch.isdigit()).strip()

        class Raising(CyclingClassifier):
            def name_key(self, name):
                raise RuntimeError("no tokenizer")

        class Unhashable(CyclingClassifier):
            def name_key(self, name):
                return list(name)

        register("digit-blind", DigitBlind, config=CyclingConfig)
        register("raising-key", Raising, config=CyclingConfig)
        register("unhashable-key", Unhashable, config=CyclingConfig)


def keying_pipeline(classifier):
    config = Config.from_dict({"pipeline": {**FAKES, "classifier": classifier}})
    return Pipeline(config, registry=registry_with(FakeComponentsPlugin(), KeyingPlugin()), device="cpu")


def test_a_classifiers_name_key_decides_which_names_are_one(shapes_image):
    pipe = keying_pipeline("digit-blind")
    message = (
        "class name 'car 2' appears twice (as 'car 1' and 'car 2'): the classifier 'digit-blind' reads both names "
        "as the same text, so one of them could never win: remove or rename one"
    )
    with pytest.raises(VocabularyError) as typed:
        pipe.vocabulary("car 1, car 2")
    assert str(typed.value) == message
    built = Vocabulary((Category(1, "car 1", True), Category(2, "car 2", True)))
    with pytest.raises(VocabularyError) as used:
        pipe.segment(shapes_image, built)
    assert str(used.value) == message
    assert pipe.vocabulary("car 1, truck").names == ("car 1", "truck")
    # A classifier without name_key keeps the Vocabulary's own rule (case, width, spaces): two names.
    assert fake_pipeline().segment(shapes_image, built).vocabulary is built


def test_a_broken_name_key_is_the_plugins_fault():
    with pytest.raises(ComponentError, match=(
        r"^classifier 'raising-key' from plugin 'KeyingPlugin' \(registered in code\) failed in name_key\(\): raised "
        r"RuntimeError: no tokenizer\. This is a fault in the plugin"
    )):
        keying_pipeline("raising-key").vocabulary("car")
    with pytest.raises(ComponentError, match=(
        r"^classifier 'unhashable-key' from plugin 'KeyingPlugin' \(registered in code\) failed in name_key\(\): it "
        r"returned an unhashable list for 'car'\. name_key\(\) must return a hashable value, e\.g\. a tuple of token ids\. "
    )):
        keying_pipeline("unhashable-key").vocabulary("car")


# -- export folders and size wording (issue 27) ---------------------------------------------------

EXPORT_FIX = "pass an existing or creatable, writable folder as outdir"


def test_export_into_a_folder_nothing_can_be_written_in_names_it_and_the_fix(shapes_image, tmp_path):
    pipe = fake_pipeline()
    result = pipe.segment(shapes_image, "person, road")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    cases = [
        (afile, f"the output folder {afile} is a file, not a folder: {EXPORT_FIX}"),
        (afile / "sub", f"cannot create the output folder {afile / 'sub'}: {afile} is a file; {EXPORT_FIX}"),
        ("", f"the output folder is empty: {EXPORT_FIX}"),
        ("/proc", f"cannot write into the output folder /proc (it is on the kernel's proc file system, which holds no files): {EXPORT_FIX}"),
        ("/proc/ovp", "cannot create the output folder /proc/ovp: cannot write into /proc (it is on the kernel's proc file system, "
                      f"which holds no files); {EXPORT_FIX}"),
        ("/sys/ovp", "cannot create the output folder /sys/ovp: cannot write into /sys (it is on the kernel's sysfs file system, "
                     f"which holds no files); {EXPORT_FIX}"),
    ]
    for outdir, message in cases:
        if str(outdir).startswith(("/proc", "/sys")) and not Path(str(outdir)).parent.is_dir():
            continue  # no such kernel file system here (not Linux)
        with pytest.raises(InputError) as info:
            pipe.export(result, shapes_image, outdir, "x")
        assert str(info.value) == message, outdir
        with pytest.raises(InputError) as info:
            pipe.finish(outdir)
        assert str(info.value) == message, outdir
    assert afile.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_wrong_size_image_is_reported_width_by_height(shapes_image, tmp_path):
    pipe = fake_pipeline()
    result = pipe.segment(shapes_image, "person")  # 64 wide, 48 high
    with pytest.raises(InputError) as info:
        pipe.export(result, shapes_image[:40], tmp_path, "x")
    assert str(info.value) == "the image is 64x40 but the result is 64x48 (width x height): export a result with the image it was computed from"
    assert list(tmp_path.iterdir()) == []
