"""Images through the image encoders together (``pipeline.batch_size``, issue 25): SAM 2's image
encoder and CLIP's dense pass on a batch give the bits of single images, the engines group the
images they read, and a batch run writes the files of a run of single images byte for byte.

Real SAM 2.1 hiera-tiny and tiny open_clip towers at random initialisation (seed 0), saved and
loaded through the product path; the engine tests also use the fake components of
:mod:`ovpanoptic.testing` (``tiles`` is a :class:`~ovpanoptic.components.BatchEncoder`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import FAKE_OVERRIDES
from PIL import Image
from test_batch_edges import _batch_files

from ovpanoptic import hookimpl
from ovpanoptic.components import BatchEncoder, ComponentContext
from ovpanoptic.config import Config, PipelineSettings, load_device_profile
from ovpanoptic.engines.local import run_local
from ovpanoptic.errors import ConfigError, ImageReadError, InputError, WeightsError
from ovpanoptic.boundary import readonly_image
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import FakeComponentsPlugin, TilesGenerator, make_shapes_image, registry_with

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

CTX = ComponentContext(device="cpu")


def shapes(height: int, width: int, shift: int) -> np.ndarray:
    return np.roll(np.array(Image.fromarray(make_shapes_image()).resize((width, height))), shift, axis=1)


# -- the components --------------------------------------------------------------------------------


def test_sam2_proposals_of_a_batch_equal_those_of_single_images(sam2_tiny_checkpoint):
    from ovpanoptic.builtins.sam2 import FastSam2Generator, Sam2FastConfig

    config = Sam2FastConfig(model=str(sam2_tiny_checkpoint), points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    single, batched = FastSam2Generator(config, CTX), FastSam2Generator(config, CTX)
    batched.loader._model = single.loader.get()
    images = [readonly_image(shapes(96, 128, s)) for s in (0, 9)] + [readonly_image(shapes(128, 96, 4))]
    assert isinstance(batched, BatchEncoder)
    batched.encode_batch(images)
    assert len(batched._batched) == 3
    for image in images:
        want, got = single.generate(image), batched.generate(image)
        assert single.stage_seconds["encoder"] > 0.05 > batched.stage_seconds["encoder"]  # the batch's embedding was used
        assert len(want) > 0
        assert np.array_equal(got.masks, want.masks) and np.array_equal(got.scores, want.scores)
        assert np.array_equal(got.boxes_xyxy, want.boxes_xyxy)
    assert not batched._batched  # each embedding used once, then dropped
    # an image generate() refuses (under 32 px a side) is left out; the others still go together
    tiny = readonly_image(shapes(20, 24, 0))
    batched.encode_batch([images[0], tiny, images[2]])
    assert len(batched._batched) == 2
    with pytest.raises(InputError, match="the image is 24x20 pixels; SAM 2 needs at least 32 px per side"):
        batched.generate(tiny)


def _clip(checkpoints: dict[str, Path], cache: Path, arch: str, **options):
    """A ``clip`` classifier on the CPU over one of conftest's tiny checkpoints, ``short`` templates."""
    from ovpanoptic.builtins.clip import ClipConfig
    from ovpanoptic.builtins.clip.classifier import ClipClassifier
    from ovpanoptic.builtins.clip.templates import TEMPLATE_SETS

    context = ComponentContext(device="cpu", cache_dir=cache, offline=True, prompt_templates={k: t for k, (t, _) in TEMPLATE_SETS.items()})
    return ClipClassifier(ClipConfig(model=arch, pretrained=str(checkpoints[arch]), templates="short", **options), context)


@pytest.mark.parametrize("arch", ["ovp-test-convnext", "ovp-test-vit"])
def test_clip_dense_features_of_a_batch_equal_those_of_single_images(clip_checkpoints, arch, tmp_path):
    from ovpanoptic.types import ProposalSet

    single, batched = (_clip(clip_checkpoints, tmp_path, arch, mode="ensemble", dense_size=64) for _ in range(2))
    # two of one size go through the tower together, the third (another aspect) alone
    images = [readonly_image(shapes(48, 64, s)) for s in (0, 7)] + [readonly_image(shapes(64, 48, 3))]
    batched.encode_batch(images)
    assert len(batched._batched) == 3
    for image in images:
        masks = np.zeros((3, *image.shape[:2]), bool)
        masks[0, 4:20, 4:20] = masks[1, 24:, :] = masks[2, :6, 30:] = True
        proposals = ProposalSet.from_masks(masks)
        want, got = single.prepare(image, proposals), batched.prepare(image, proposals)
        # a batched convolution sums in another order on this CPU (ConvNeXt: up to ~5e-7 apart;
        # the ViT gives the same bits): equal to float32 rounding
        np.testing.assert_allclose(got.dense, want.dense, rtol=0, atol=2e-6)
        assert np.array_equal(got.crop, want.crop)  # the crops are not batched across images
        assert np.abs(want.dense).sum() > 0
    assert not batched._batched


def test_clip_crop_mode_keeps_nothing(clip_checkpoints, tmp_path):
    clf = _clip(clip_checkpoints, tmp_path, "ovp-test-vit", mode="crop")
    clf.encode_batch([readonly_image(shapes(48, 64, 0)), readonly_image(shapes(48, 64, 5))])
    assert clf._batched == {} and clf._loaded is None  # the crops depend on the proposals: not even the model is loaded


# -- the setting -----------------------------------------------------------------------------------


def test_batch_size_is_checked_and_the_device_profile_chooses_it_unless_stated():
    for bad in (0, 65, -2):
        with pytest.raises(ConfigError, match=rf"^pipeline.batch_size must be 1 to 64 images, got {bad} \(1: each image"):
            Config.from_dict({"pipeline": {"batch_size": bad}})
    assert load_device_profile("cuda").pipeline["batch_size"] == 8
    assert load_device_profile("cuda-fp32").pipeline["batch_size"] == 4
    assert "batch_size" not in load_device_profile("cpu").pipeline
    fakes = list(FAKE_OVERRIDES[:3])
    assert Pipeline(overrides=fakes, device="cpu", registry=registry_with(FakeComponentsPlugin())).batch_size == 1
    for profile, stated, want in (("cuda", None, 8), ("cuda", 2, 2), ("cuda-fp32", None, 4), ("none", None, 1), ("cpu", 3, 3)):
        extra = [f"pipeline.device_profile={profile!r}"] + ([f"pipeline.batch_size={stated}"] if stated else [])
        pipe = Pipeline(overrides=fakes + extra, device="cpu", registry=registry_with(FakeComponentsPlugin()))
        assert pipe.batch_size == want, (profile, stated)


def test_a_model_free_batch_run_never_resolves_the_device_for_its_batch_size(tmp_path, monkeypatch):
    """With device_profile = auto the profile's batch size waits for the device, which a pipeline
    without models never resolves: the run goes image by image, torch untouched."""
    import ovpanoptic.pipeline as pipeline_module

    def boom(spec):
        raise AssertionError("resolve_device called")

    monkeypatch.setattr(pipeline_module, "resolve_device", boom)
    inputs = _inputs(tmp_path / "in")
    pipe = Pipeline(overrides=list(FAKE_OVERRIDES[:3]), registry=registry_with(FakeComponentsPlugin()))
    vocabulary = pipe.vocabulary("person, car, road")
    pipe.build_components(["coco-panoptic"])
    report = run_local(pipe, vocabulary, inputs, tmp_path / "out", ["coco-panoptic"])
    assert report.done == 6 and pipe.batch_size == 1 and pipe.component("proposal_generator").batches == []


# -- the engines -----------------------------------------------------------------------------------


def _inputs(folder: Path) -> list[Path]:
    folder.mkdir()
    for i in range(7):
        Image.fromarray(np.roll(make_shapes_image(), 5 * i, axis=1)).save(folder / f"img{i:03d}.png")
    (folder / "img003.png").write_bytes(b"not an image")
    return sorted(folder.iterdir())


@pytest.mark.parametrize("overlap", [True, False])
def test_the_local_engine_batches_the_images_it_reads_and_writes_the_same_files(tmp_path, overlap):
    """Batches of 3 through the encoders: 2 images done by an earlier run are skipped, an
    unreadable one is left out of its batch; the files are those of batch size 1, byte for byte."""
    inputs = _inputs(tmp_path / "in")
    formats = ["coco-panoptic", "overlay", "summary"]
    folders, generators = {}, {}
    for size in (1, 3):
        pipe = Pipeline(overrides=[*FAKE_OVERRIDES[:3], f"pipeline.batch_size={size}"], device="cpu", registry=registry_with(FakeComponentsPlugin()))
        vocabulary = pipe.vocabulary("person, car, road")
        pipe.build_components(formats)
        out = tmp_path / f"out-{size}"
        run_local(pipe, vocabulary, inputs[:2], out, formats, overlap=overlap)
        report = run_local(pipe, vocabulary, inputs, out, formats, overlap=overlap)
        assert (report.done, report.skipped, [o.path.name for o in report.failed]) == (4, 2, ["img003.png"])
        folders[size], generators[size] = _batch_files(out), pipe.component("proposal_generator")
        assert (pipe.batch_size, dict(pipe.encode_batches)) == ((1, {}) if size == 1 else (3, {2: 3}))
    assert folders[3] == folders[1]
    assert generators[1].batches == [] and generators[1].batched_hits == 0
    # run 1: images 0 and 1; run 2: 2 and 4 (3 cannot be read), then 5 and 6: each image encoded in a batch
    assert generators[3].batches == [2, 2, 2] and generators[3].batched_hits == 6 and generators[3].calls == 6


@pytest.mark.parametrize(
    "error",
    [RuntimeError("CUDA out of memory (simulated)"), ConfigError("a config error (simulated)"), WeightsError("no weights (simulated)"),
     ImageReadError("cannot read (simulated)")],
    ids=lambda e: type(e).__name__,
)
def test_a_failing_batched_pass_falls_back_to_single_images_and_is_not_asked_again(tmp_path, caplog, error):
    """Whatever a component's batched pass raises, the run gives the files of batch size 1, with
    one warning naming the images; the component is not asked again and no batch is counted."""

    class Broken(TilesGenerator):
        def encode_batch(self, images):
            super().encode_batch(images)
            raise error

    class Plugin:
        @hookimpl
        def register_proposal_generators(self, register):
            register("broken-batch", Broken, config=type(TilesGenerator().config), description="tiles with a failing batch pass")

    inputs = _inputs(tmp_path / "in")
    overrides = [*FAKE_OVERRIDES[1:3], "pipeline.proposal_generator='broken-batch'", "pipeline.batch_size=2"]
    pipe = Pipeline(overrides=overrides, device="cpu", registry=registry_with(FakeComponentsPlugin(), Plugin()))
    vocabulary = pipe.vocabulary("person, car, road")
    pipe.build_components(["coco-panoptic"])
    with caplog.at_level(logging.WARNING, logger="ovpanoptic.pipeline"):
        report = run_local(pipe, vocabulary, inputs, tmp_path / "out", ["coco-panoptic"])
    assert report.done == 6
    assert pipe.component("proposal_generator").batches == [2]  # asked once only
    assert pipe.encode_batches == {}  # no batch went through an encoder
    warnings = [r.getMessage() for r in caplog.records if "batched encoder pass" in r.getMessage()]
    first = ", ".join(str(p) for p in inputs[:2])
    assert len(warnings) == 1 and warnings[0].startswith(
        f"the batched encoder pass of the proposal generator 'broken-batch' over 2 images ({first}) failed, so this run encodes each "
        "image alone: "
    ), warnings
    assert str(error) in warnings[0]


def test_a_real_pipeline_in_batches_writes_the_files_of_single_images(sam2_tiny_checkpoint, clip_checkpoints, tmp_path, monkeypatch):
    """SAM 2 proposals, CLIP dense scores, detectron2 fusion: batch size 3 (images of two sizes)
    against batch size 1, every file byte for byte."""
    monkeypatch.setenv("OVPANOPTIC_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "in"
    folder.mkdir()
    for i, (h, w) in enumerate([(96, 128), (96, 128), (128, 96), (96, 128)]):
        Image.fromarray(shapes(h, w, 6 * i)).save(folder / f"img{i}.png")
    inputs = sorted(folder.iterdir())
    formats = ["coco-panoptic", "summary"]
    folders = {}
    for size in (1, 3):
        config = Config.from_dict({
            "pipeline": {"proposal_generator": "sam2", "classifier": "clip", "fuser": "detectron2", "device": "cpu",
                         "device_profile": "none", "batch_size": size},
            "proposal_generator": {"sam2": {"model": str(sam2_tiny_checkpoint), "points_per_side": 4, "pred_iou_thresh": 0.0,
                                            "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}},
            "classifier": {"clip": {"model": "ovp-test-convnext", "pretrained": str(clip_checkpoints["ovp-test-convnext"]),
                                    "templates": "short", "dense_size": 64}},
            "fuser": {"detectron2": {"min_class_prob": 0.0, "instances_score_thresh": 0.0}},
        })
        pipe = Pipeline(config)
        vocabulary = pipe.vocabulary("person, car, dog")  # things: one segment per proposal kept
        pipe.build_components(formats)
        report = run_local(pipe, vocabulary, inputs, tmp_path / f"out-{size}", formats)
        assert report.done == 4
        assert sum(o.segments for o in report.outcomes) > 4
        folders[size] = _batch_files(tmp_path / f"out-{size}")
        assert dict(pipe.encode_batches) == ({} if size == 1 else {3: 1})
        if size == 3:
            assert [("batch_encode" in o.timings) for o in report.outcomes] == [True, True, True, False]
    # CLIP's batched ConvNeXt pass sums in another order (~3e-7 apart, see above): the pixels and
    # ids are the same, a score in a JSON file may differ in its last digits
    assert list(folders[3]) == list(folders[1])
    for name, data in folders[1].items():
        if name.endswith(".json"):
            _assert_close(json.loads(folders[3][name]), json.loads(data), name)
        else:
            assert folders[3][name] == data, name


def _assert_close(got, want, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), where
        for key in want:
            _assert_close(got[key], want[key], f"{where}:{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=0, abs=1e-5), where
    else:
        assert got == want, where


# -- Pipeline.encode_batch from Python -----------------------------------------------------------


def _fake_pipe(*extra: str) -> Pipeline:
    return Pipeline(overrides=[*FAKE_OVERRIDES[:3], *extra], device="cpu", registry=registry_with(FakeComponentsPlugin()))


def test_encode_batch_keeps_encodings_by_content_never_by_object():
    """An image changed in place after encode_batch is encoded again (its new content segmented),
    the unchanged one uses its kept encoding."""
    pipe = _fake_pipe("pipeline.batch_size=2")
    x, y = shapes(48, 64, 0), shapes(48, 64, 9)
    assert pipe.encode_batch([x, y]) == 2
    x[:10] = 255  # changed after its encoding
    generator = pipe.component("proposal_generator")
    first, second = pipe.segment(x, "person, car, road"), pipe.segment(y, "person, car, road")
    assert generator.batched_hits == 1 and "batch_encode" not in first.timings and second.timings["batch_encode"] > 0
    assert second.timings["total"] >= second.timings["batch_encode"]


def test_encode_batch_refuses_what_is_not_a_list_of_images_or_too_many():
    pipe = _fake_pipe("pipeline.batch_size=3")
    image = shapes(48, 64, 0)
    for bad, what in ((image, "ndarray of shape (48, 64, 3)"), ("a.jpg", "str"), (Image.fromarray(image), "Image")):
        with pytest.raises(InputError, match=rf"^encode_batch\(\) takes a list of images, got {re.escape(what)}: pass \[image, ...\] "):
            pipe.encode_batch(bad)
    with pytest.raises(InputError, match=r"^encode_batch\(\) got 4 images, more than pipeline.batch_size \(3\): pass at most 3 at a time, "
                       r"or raise pipeline.batch_size \(up to 64, e.g. --set pipeline.batch_size=8\)$"):
        pipe.encode_batch([image] * 4)
    for sources in (["x"], "xy"):
        with pytest.raises(InputError, match=r"^encode_batch\(\): sources must be a list of 2 names, one per image, got "):
            pipe.encode_batch([image, shapes(48, 64, 5)], sources=sources)
    assert pipe.encode_batch(np.stack([image, shapes(48, 64, 5)])) == 2  # an (N, H, W, 3) stack is a list of images
    assert pipe.encode_batch([image, image]) == 0  # one image twice: nothing to batch
    assert pipe.encode_batch([]) == 0


def test_the_batch_size_a_device_profile_sets_is_logged_once(caplog):
    pipe = _fake_pipe("pipeline.device_profile='cuda'")
    with caplog.at_level(logging.INFO, logger="ovpanoptic.pipeline"):
        assert [pipe.batch_size, pipe.batch_size] == [8, 8]
    told = [r.getMessage() for r in caplog.records if "batch_size" in r.getMessage()]
    assert len(told) == 1 and told[0].startswith("pipeline.batch_size = 8 from device profile 'cuda' ("), told
    assert pipe.batch_size_source.startswith("device profile 'cuda' (") and pipe.batch_size_source.endswith("cuda.toml)")
    assert (_fake_pipe("pipeline.batch_size=2").batch_size_source, _fake_pipe().batch_size_source) == ("the config", "the default")
    for bad in (True, 2.5, "8"):
        with pytest.raises(ConfigError, match=rf"^pipeline.batch_size: expected an integer, got {re.escape(repr(bad))} \(images per "):
            PipelineSettings(batch_size=bad)
