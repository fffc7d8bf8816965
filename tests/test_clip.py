"""The built-in ``clip`` classifier: real open_clip architectures at random init, loaded from
checkpoints the tests write, through the product's loading path.

The tiny architectures (``tests/data/clip_models/*.json``) are registered with
``open_clip.add_model_config``; the text towers use the real CLIP BPE tokenizer, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ovpanoptic.components import ComponentContext
from ovpanoptic.config import Config, build_dataclass, load_config
from ovpanoptic.errors import ConfigError, InputError, MissingDependencyError, VocabularyError, WeightsError
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import FakeComponentsPlugin, check_classifier, make_shapes_image, registry_with
from ovpanoptic.types import Category, ClassScores, PanopticResult, ProposalSet, Vocabulary

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from ovpanoptic.builtins.clip import DEFAULT_MODELS, DEFAULT_TAGS, ClipConfig  # noqa: E402
from ovpanoptic.builtins.clip.classifier import ClipClassifier, ClipFeatures, _vit_patch_embeddings  # noqa: E402
from ovpanoptic.builtins.clip.image import crop_box_for, dense_input_size, masked_crop, masked_crops  # noqa: E402
from ovpanoptic.builtins.clip.loading import HUB_WEIGHTS_NAME, load_tokenizer, weights_source  # noqa: E402
from ovpanoptic.builtins.clip.templates import IMAGENET_80, SHORT, TEMPLATE_SETS  # noqa: E402
from ovpanoptic.weights import HubFile  # noqa: E402

VIT, CONVNEXT, RESNET = "ovp-test-vit", "ovp-test-convnext", "ovp-test-resnet"
TEMPLATES = {name: templates for name, (templates, _) in TEMPLATE_SETS.items()}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def checkpoints(clip_checkpoints: dict[str, Path]) -> dict[str, Path]:
    """Tiny open_clip architectures at random init (seed 0), saved as checkpoints (conftest's)."""
    return clip_checkpoints


def context(tmp_path: Path) -> ComponentContext:
    return ComponentContext(device="cpu", cache_dir=tmp_path / "cache", offline=True, prompt_templates=TEMPLATES)


def make_classifier(checkpoints, tmp_path, arch=VIT, **options) -> ClipClassifier:
    options.setdefault("templates", "short")
    options.setdefault("dense_size", 64)
    config = ClipConfig(model=arch, pretrained=str(checkpoints[arch]), **options)
    return ClipClassifier(config, context(tmp_path))


def vocab(*names: str) -> Vocabulary:
    cats = []
    for i, entry in enumerate(names):
        first, *syn = entry.split("|")
        cats.append(Category(i + 1, first, True, synonyms=tuple(syn)))
    return Vocabulary(tuple(cats))


def shapes_proposals() -> ProposalSet:
    masks = np.zeros((3, 48, 64), bool)
    masks[0, 8:24, 8:24] = True  # the red square
    masks[1, 30:40, :] = True  # the blue bar
    masks[2, 0:6, 40:60] = True  # gray background
    return ProposalSet.from_masks(masks)


def count_text_prompts(classifier: ClipClassifier) -> list[int]:
    """Wrap the classifier's text encoder; returns the list of batch sizes it is called with."""
    text = classifier._state().text
    calls: list[int] = []
    original = text._encode

    def counting(prompts):
        calls.append(len(prompts))
        return original(prompts)

    text._encode = counting
    return calls


# -- plugin, templates, config ------------------------------------------------------------------


def test_plugin_registers_clip_and_templates_without_importing_torch():
    code = (
        "import sys\n"
        "from ovpanoptic.plugins import Registry\n"
        "reg = Registry.create(entry_points=False, env={})\n"
        "spec = reg.component('classifier', 'clip')\n"
        "print(spec.plugin, spec.config_class.__name__, len(reg.prompt_templates['imagenet-80'][0]),\n"
        "      len(reg.prompt_templates['short'][0]), 'torch' in sys.modules, 'open_clip' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["clip", "ClipConfig", "80", "7", "False", "False"]


def test_imagenet_80_templates_are_the_clip_papers():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    assert IMAGENET_80 == tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    assert len(set(IMAGENET_80)) == 80 and len(SHORT) == 7
    assert all(t.count("{}") == 1 for templates in TEMPLATES.values() for t in templates)


def test_config_defaults_and_validation():
    cfg = ClipConfig()
    assert (cfg.mode, cfg.templates, cfg.architecture) == ("dense", "imagenet-80", "convnext_base_w")
    assert ClipConfig(mode="crop").architecture == "ViT-B-16"
    bad = {
        "mode": ("sparse", "mode must be one of crop, dense, ensemble"),
        "crop_context": (0.5, "crop_context must be in"),
        "dense_size": (10, "dense_size must be in"),
        "ensemble_weight": (1.5, "ensemble_weight must be in"),
        "no_object_similarity": (2.0, "cosine similarity in"),
        "text_batch_size": (0, "text_batch_size must be >= 1"),
        "crop_fill": ("noise", "crop_fill must be"),
        "background_prompts": ([""], "background_prompts must be"),
    }
    for key, (value, message) in bad.items():
        with pytest.raises(ValueError, match=message):
            ClipConfig(**{key: value})
    with pytest.raises(ConfigError, match="classifier.clip.mode: 'sparse' is not one of 'crop', 'dense', 'ensemble'"):
        build_dataclass(ClipConfig, {"mode": "sparse"}, "classifier.clip")


def test_shipped_presets_configure_clip():
    reg = registry_with(FakeComponentsPlugin())
    spec = reg.component("classifier", "clip")
    for preset in ("default", "cpu-fast"):
        config = load_config(preset)
        config.check_tables(reg.components)
        assert config.component_config(spec).templates in reg.prompt_templates
    fast = load_config("cpu-fast").component_config(spec)
    assert (fast.mode, fast.templates) == ("dense", "short") and fast.dense_size < ClipConfig().dense_size


def test_unknown_template_set_is_a_clear_error():
    with pytest.raises(ConfigError, match="templates 'nope' is not a registered prompt-template set; available: imagenet-80, short, single"):
        ClipClassifier(ClipConfig(templates="nope"), ComponentContext(prompt_templates=TEMPLATES))


def test_missing_open_clip_raises_missing_dependency_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    clf = ClipClassifier(ClipConfig(), context(tmp_path))
    with pytest.raises(MissingDependencyError, match="pip install open-clip-torch"):
        clf.load()


# -- weights ---------------------------------------------------------------------------------


def test_default_models_map_to_open_clip_hub_files():
    for mode, (arch, tag) in DEFAULT_MODELS.items():
        source = weights_source(ClipConfig(mode=mode))
        assert (source.architecture, source.spec) == (arch, tag)
        assert source.tag_cfg["hf_hub"] and source.fix == f"ovpanoptic download clip --model {arch}"
    source = weights_source(ClipConfig())
    assert source.known["laion2b_s13b_b82k_augreg"] == HubFile(
        "laion/CLIP-convnext_base_w-laion2B-s13B-b82K-augreg", HUB_WEIGHTS_NAME
    )
    for arch, tag in DEFAULT_TAGS.items():
        assert open_clip.get_pretrained_cfg(arch, tag).get("hf_hub"), (arch, tag)
    with pytest.raises(ConfigError, match="'ViT-B-61' is not an open_clip architecture. Did you mean 'ViT-B-16'"):
        weights_source(ClipConfig(model="ViT-B-61"))
    with pytest.raises(WeightsError, match="'laion9b' is not an open_clip tag of ViT-B-16 \\(.*laion2b_s34b_b88k"):
        weights_source(ClipConfig(model="ViT-B-16", pretrained="laion9b"))


def test_default_tokenizers_run_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for arch in {a for a, _ in DEFAULT_MODELS.values()}:
        tokens = load_tokenizer(arch, "fix")(["a photo of a forklift."])
        assert tokens.shape == (1, 77) and tokens.dtype == torch.long


def test_offline_and_not_cached_says_so(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clf = ClipClassifier(ClipConfig(mode="crop"), ComponentContext(cache_dir=tmp_path, prompt_templates=TEMPLATES))
    with pytest.raises(WeightsError, match=r"HF_HUB_OFFLINE=1.*CLIP-ViT-B-16-laion2B-s34B-b88K.*ovpanoptic download clip --model ViT-B-16"):
        clf.download()
    hub = ClipClassifier(ClipConfig(model="ViT-B-16", pretrained="hf-hub:org/repo"), context(tmp_path))
    with pytest.raises(WeightsError, match=r"offline mode is on \(HF_HUB_OFFLINE=1\): looked for hf-hub:org/repo/open_clip_pytorch_model.bin"):
        hub.load()


def test_loads_the_saved_checkpoint_strictly(checkpoints, tmp_path):
    for arch in (VIT, CONVNEXT):
        clf = make_classifier(checkpoints, tmp_path, arch)
        model = clf.load()
        saved = torch.load(checkpoints[arch], weights_only=True)
        assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
        assert not model.training and clf.download() == [checkpoints[arch]]
        assert clf.logit_scale == pytest.approx(float(saved["logit_scale"].exp()))


def test_missing_checkpoint_names_the_path_and_the_fix(checkpoints, tmp_path):
    missing = tmp_path / "nope.pt"
    clf = ClipClassifier(ClipConfig(model=VIT, pretrained=str(missing)), context(tmp_path))
    with pytest.raises(WeightsError, match=rf"{missing} does not exist.*`ovpanoptic download clip --model {VIT}`"):
        clf.prepare(make_shapes_image(), shapes_proposals())


def test_truncated_checkpoint_is_a_weights_error(checkpoints, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(checkpoints[VIT].read_bytes()[:5000])
    clf = ClipClassifier(ClipConfig(model=VIT, pretrained=str(cut)), context(tmp_path))
    with pytest.raises(WeightsError, match="cannot be read.*truncated"):
        clf.load()


def test_safetensors_checkpoints_read_like_torch_ones(tmp_path):
    import torch
    from safetensors.torch import save_file

    from ovpanoptic.builtins.clip.loading import read_checkpoint

    good = tmp_path / "w.safetensors"
    save_file({"module.proj": torch.arange(6.0).reshape(2, 3)}, str(good))
    state = read_checkpoint(good, what="CLIP weights", fix="ovpanoptic download clip")
    assert list(state) == ["proj"] and state["proj"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(WeightsError, match=r"cannot be read .*truncated, corrupt or not a safetensors checkpoint\. "
                       r"Replace it with a complete copy of the checkpoint"):  # a local file: re-downloading cannot fix it
        read_checkpoint(cut, what="CLIP weights", fix="ovpanoptic download clip")
    with pytest.raises(WeightsError, match="not found at"):
        read_checkpoint(tmp_path / "gone.safetensors", what="CLIP weights", fix="ovpanoptic download clip")


def test_mismatched_architecture_lists_keys(checkpoints, tmp_path):
    clf = ClipClassifier(
        ClipConfig(model=CONVNEXT, pretrained=str(checkpoints[VIT])), context(tmp_path)
    )
    with pytest.raises(WeightsError, match=r"does not match the model architecture: \d+ missing keys \(e.g. \['visual.trunk"):
        clf.load()


def test_training_checkpoints_and_safetensors_load(checkpoints, tmp_path):
    saved = torch.load(checkpoints[VIT], weights_only=True)
    wrapped = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in saved.items()}}, wrapped)
    clf = ClipClassifier(ClipConfig(model=VIT, pretrained=str(wrapped), mode="crop"), context(tmp_path))
    assert torch.equal(clf.load().visual.conv1.weight, saved["visual.conv1.weight"])
    from safetensors.torch import save_file

    safe = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in saved.items()}, str(safe))
    clf = ClipClassifier(ClipConfig(model=VIT, pretrained=str(safe), mode="crop"), context(tmp_path))
    assert torch.equal(clf.load().visual.conv1.weight, saved["visual.conv1.weight"])


def test_dense_mode_needs_a_vit_or_convnext_tower(checkpoints, tmp_path):
    with pytest.raises(ConfigError, match="needs a ConvNeXt \\(timm\\) or ViT image tower.*ModifiedResNet.*mode=crop"):
        make_classifier(checkpoints, tmp_path, RESNET, mode="dense").load()


def test_crop_mode_works_for_any_tower(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, RESNET, mode="crop", templates="single")
    scores = clf.score(clf.prepare(make_shapes_image(), shapes_proposals()), vocab("cat", "dog"))
    assert scores.probs.shape == (3, 2)


# -- text side and the cache -----------------------------------------------------------------


def test_text_cache_encodes_each_class_once_ever(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path)
    calls = count_text_prompts(clf)
    prepared = clf.prepare(make_shapes_image(), shapes_proposals())
    first = clf.score(prepared, vocab("red square", "blue bar|stripe", "floor"))
    assert sum(calls) == 4 * len(SHORT)  # four names (a synonym counts), 7 templates each
    calls.clear()
    again = clf.score(prepared, vocab("red square", "blue bar|stripe", "floor"))
    assert calls == [] and np.array_equal(again.probs, first.probs)
    clf.score(prepared, vocab("floor", "red square", "pallet"))
    assert sum(calls) == len(SHORT)  # only the new class's prompts
    fresh = make_classifier(checkpoints, tmp_path)
    fresh_calls = count_text_prompts(fresh)
    reloaded = fresh.score(fresh.prepare(make_shapes_image(), shapes_proposals()), vocab("red square", "blue bar|stripe", "floor"))
    assert fresh_calls == []  # the disk cache answered
    np.testing.assert_allclose(reloaded.probs, first.probs, rtol=1e-5, atol=1e-6)
    root = tmp_path / "cache" / "clip-text"
    assert (root / "weights-sha256.json").is_file()
    other_set = make_classifier(checkpoints, tmp_path, templates="single")
    other_calls = count_text_prompts(other_set)
    other_set.text_embeddings(vocab("red square").categories)
    assert other_calls == [1]  # another template set is another cache key
    assert not any(p.name.endswith(".tmp") for p in root.rglob("*"))


def test_text_embeddings_are_normalised_averages_of_synonyms(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, text_cache=False)
    both = clf.text_embeddings(vocab("tv|television").categories)[0]
    single = clf.text_embeddings(vocab("tv", "television").categories)
    expected = single.mean(axis=0) / np.linalg.norm(single.mean(axis=0))
    np.testing.assert_allclose(both, expected, rtol=1e-5, atol=1e-6)
    assert np.allclose(np.linalg.norm(single, axis=1), 1.0, atol=1e-5)
    assert not (tmp_path / "cache").exists()  # text_cache=False writes nothing


def test_ten_thousand_classes_are_encoded_in_bounded_batches(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, templates="single", text_batch_size=256, text_cache=False)
    calls = count_text_prompts(clf)
    big = Vocabulary(tuple(Category(i + 1, f"class {i}", True) for i in range(10_000)))
    prepared = clf.prepare(make_shapes_image(), shapes_proposals())
    scores = clf.score(prepared, big)
    assert scores.probs.shape == (3, 10_000) and scores.logits.dtype == np.float32
    assert sum(calls) == 10_000 and max(calls) == 256 and len(calls) == 40
    assert (scores.probs.sum(axis=1) <= 1 + 1e-5).all()


# -- image side -------------------------------------------------------------------------------


def test_crop_box_is_a_square_around_the_box_enlarged_by_the_context():
    assert crop_box_for((10, 20, 30, 30), 1.0) == (10, 15, 30, 35)
    assert crop_box_for((10, 20, 30, 30), 1.5) == (5, 10, 35, 40)
    assert crop_box_for((3, 5, 4, 6), 1.0) == (3, 5, 4, 6)  # a one-pixel mask
    for box in [(0, 0, 7, 3), (5, 1, 6, 40), (2, 2, 9, 9)]:
        x0, y0, x1, y1 = crop_box_for(box, 1.3)
        assert x1 - x0 == y1 - y0 and x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3]


def test_a_masks_crop_holds_only_its_pixels_plus_fill():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[30:38, 42:50] = True  # an L near the bottom-right corner: the crop runs past the image
    mask[36:38, 30:42] = True
    box = ProposalSet.from_masks(mask[None]).boxes_xyxy[0]
    assert tuple(box) == (30, 30, 50, 38)
    crop_box = crop_box_for(box, 2.0)
    assert crop_box == (20, 14, 60, 54)
    fill = (123, 117, 104)
    crop = masked_crop(image, mask, crop_box, fill)
    assert crop.shape == (40, 40, 3) and crop.dtype == np.uint8
    inside = np.zeros((40, 40), bool)
    inside[30 - 14 : 40 - 14, 0:30] = mask[30:40, 20:50]
    np.testing.assert_array_equal(crop[inside], image[mask])
    assert (crop[~inside] == fill).all()
    blurred = masked_crop(image, mask, crop_box, fill, blur=True)
    np.testing.assert_array_equal(blurred[inside], image[mask])
    in_image = np.zeros((40, 40), bool)
    in_image[0:26, 0:30] = True  # crop rows 14..39 and columns 20..49 of the image
    assert (blurred[~in_image] == fill).all() and not (blurred[in_image & ~inside] == fill).all(axis=1).all()


def test_crop_mode_encodes_the_masked_crops_in_batches(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, mode="crop", crop_batch_size=2)
    image, proposals = make_shapes_image(), shapes_proposals()
    model = clf.load()
    seen = []
    original = model.encode_image
    model.encode_image = lambda x, *a, **k: seen.append(x.clone()) or original(x, *a, **k)
    features = clf.prepare(image, proposals)
    assert [len(x) for x in seen] == [2, 1]
    expected = masked_crops(image, proposals.masks, proposals.boxes_xyxy, clf.preprocess, context=1.5)
    assert expected.shape == (3, 32, 32, 3)
    np.testing.assert_allclose(torch.cat(seen).numpy(), clf.preprocess.normalise(expected), atol=1e-6)
    assert features.dense is None and features.crop.shape == (3, 32) and features.crop.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features.crop, axis=1), 1.0, atol=1e-5)
    fill_only = clf.preprocess.normalise(np.full((1, 2, 2, 3), clf.preprocess.fill_rgb, np.uint8))
    assert np.abs(fill_only).max() < 0.01  # the fill is the model's mean colour: ~0 after normalisation


def test_dense_vit_pools_patch_tokens_inside_masks(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, mode="dense", dense_size=64)
    image = make_shapes_image()  # 48 x 64: fed at 48 x 64, a 6 x 8 grid of 8-pixel patches
    assert dense_input_size(48, 64, 64, 8) == (48, 64)
    masks = np.zeros((3, 48, 64), bool)
    masks[0, 8:16, 16:24] = True  # exactly patch (1, 2)
    masks[1, 8:16, 16:32] = True  # patches (1, 2) and (1, 3)
    masks[2, 0:4, 0:8] = True  # half of patch (0, 0): still only that patch
    dense = clf.prepare(image, ProposalSet.from_masks(masks)).dense
    x = torch.from_numpy(clf.preprocess.normalise(image[None]))
    with torch.inference_mode():
        tokens, grid = _vit_patch_embeddings(clf.load().visual, x)
    assert grid == (6, 8)
    tokens = tokens[0].numpy().reshape(6, 8, -1)

    def unit(v):
        return v / np.linalg.norm(v)

    np.testing.assert_allclose(dense[0], unit(tokens[1, 2]), atol=1e-5)
    np.testing.assert_allclose(dense[1], unit(tokens[1, 2] + tokens[1, 3]), atol=1e-5)
    np.testing.assert_allclose(dense[2], unit(tokens[0, 0]), atol=1e-5)
    assert dense.dtype == np.float32


def test_dense_convnext_whole_image_mask_equals_the_global_embedding(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, CONVNEXT, mode="dense", dense_size=128)
    image = make_shapes_image()
    h, w = dense_input_size(48, 64, 128, 32)
    assert (h, w) == (96, 128)
    masks = np.zeros((2, 48, 64), bool)
    masks[0] = True
    masks[1, :32, :32] = True  # feature cells rows 0..1 and columns 0..1 (16-pixel cells)
    dense = clf.prepare(image, ProposalSet.from_masks(masks)).dense
    x = torch.from_numpy(clf.preprocess.normalise(clf.preprocess.resize(image, h, w)[None]))
    model = clf.load()
    with torch.inference_mode():
        whole = model.encode_image(x, normalize=True)[0].numpy()
        fmap = model.visual.trunk.forward_features(x)
        quarter = fmap[:, :, :2, :2].mean(dim=(2, 3))[:, :, None, None]
        expected = torch.nn.functional.normalize(model.visual.head(model.visual.trunk.forward_head(quarter)), dim=-1)[0].numpy()
    assert fmap.shape[-2:] == (3, 4)
    np.testing.assert_allclose(dense[0], whole, atol=1e-5)
    np.testing.assert_allclose(dense[1], expected, atol=1e-5)


# -- scores -----------------------------------------------------------------------------------


def test_scores_shapes_temperature_and_the_no_object_rule(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, CONVNEXT, mode="ensemble", dense_size=128)
    image = make_shapes_image()
    masks = np.zeros((3, 48, 64), bool)
    masks[0, 8:24, 8:24] = True
    masks[1, 30:40, :] = True  # masks[2] is empty: it matches nothing
    proposals = ProposalSet(masks, np.zeros((3, 4), np.float32), np.ones(3, np.float32))
    prepared = clf.prepare(image, proposals)
    v = vocab("red square", "blue bar", "floor")
    scores = clf.score(prepared, v)
    assert isinstance(scores, ClassScores) and scores.probs.shape == scores.logits.shape == (3, 3)
    assert scores.probs.dtype == scores.logits.dtype == np.float32 and scores.category_ids == (1, 2, 3)
    assert scores.temperature == pytest.approx(1.0 / clf.logit_scale)
    assert (scores.probs.sum(axis=1) <= 1.0).all()
    assert scores.probs[2].sum() < 0.5 and np.array_equal(scores.logits[2], np.zeros(3, np.float32))
    # ensemble = geometric mean of the crop and dense probabilities = mean of their logits
    crop_only = clf.score(ClipFeatures(prepared.crop, None, 3, prepared.model_key), v)
    dense_only = clf.score(ClipFeatures(None, prepared.dense, 3, prepared.model_key), v)
    np.testing.assert_allclose(scores.logits, (crop_only.logits + dense_only.logits) / 2, rtol=1e-5, atol=1e-5)
    # without the rule every row sums to 1; a background prompt takes probability again
    plain = make_classifier(checkpoints, tmp_path, CONVNEXT, mode="dense", dense_size=128, no_object_similarity=-1.0)
    plain_scores = plain.score(plain.prepare(image, proposals), v)
    np.testing.assert_allclose(plain_scores.probs.sum(axis=1), 1.0, atol=1e-5)
    bg = make_classifier(checkpoints, tmp_path, CONVNEXT, mode="dense", dense_size=128, no_object_similarity=-1.0, background_prompts=("background",))
    bg_scores = bg.score(bg.prepare(image, proposals), v)
    assert bg_scores.probs.shape == (3, 3) and (bg_scores.probs.sum(axis=1) < 0.99).all()


def test_empty_proposal_set_gives_empty_scores(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, mode="ensemble")
    calls = count_text_prompts(clf)
    prepared = clf.prepare(make_shapes_image(), ProposalSet.empty(48, 64))
    assert prepared.crop.shape == (0, 32) and prepared.dense.shape == (0, 32)
    scores = clf.score(prepared, vocab("cat", "dog"))
    assert scores.probs.shape == (0, 2) and scores.probs.dtype == np.float32 and calls == []


def test_one_class_and_bad_inputs(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, mode="dense")
    prepared = clf.prepare(make_shapes_image(), shapes_proposals())
    one = clf.score(prepared, vocab("cat"))
    assert one.probs.shape == (3, 1) and (one.probs < 1.0).all()  # "no object" still takes its share
    with pytest.raises(VocabularyError, match="the vocabulary is empty"):
        Vocabulary(())
    with pytest.raises(InputError, match="needs a Vocabulary"):
        clf.score(prepared, ["cat"])
    with pytest.raises(InputError, match="needs the ClipFeatures"):
        clf.score(np.zeros((3, 32)), vocab("cat"))
    with pytest.raises(InputError, match=r"^clip: proposals must be a ProposalSet of masks at the image's size, 64x24 \(width x height\); got 64x48$"):
        clf.prepare(make_shapes_image()[:24], shapes_proposals())
    with pytest.raises(InputError, match="uint8 RGB"):
        clf.prepare(make_shapes_image().astype(np.float32), shapes_proposals())


def test_conformance_check(checkpoints, tmp_path):
    for mode in ("crop", "dense", "ensemble"):
        clf = make_classifier(checkpoints, tmp_path, VIT, mode=mode)
        scores = check_classifier(clf, make_shapes_image(), shapes_proposals(), vocab("red square", "blue bar", "wall"))
        assert scores.probs.shape == (3, 3)


def test_builtin_clip_passes_the_kit_through_its_registered_factory(checkpoints, tmp_path):
    from ovpanoptic.plugins import Registry
    from ovpanoptic.testing import build_component

    registry = Registry.create(entry_points=False, env={})
    options = {"model": VIT, "pretrained": str(checkpoints[VIT]), "templates": "short", "dense_size": 64}
    built = build_component(registry, "classifier", "clip", options, context=context(tmp_path))
    scores = check_classifier(built, make_shapes_image(), shapes_proposals(), vocab("red square", "blue bar", "wall"))
    assert scores.probs.shape == (3, 3) and built.target.what == "classifier 'clip'"


def test_pipeline_end_to_end_reuses_prepared_features(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("OVPANOPTIC_CACHE_DIR", str(tmp_path / "cache"))
    config = Config.from_dict(
        {
            "pipeline": {"proposal_generator": "tiles", "classifier": "clip", "fuser": "maskformer", "exporters": [], "device": "cpu"},
            "classifier": {"clip": {"model": VIT, "pretrained": str(checkpoints[VIT]), "templates": "short", "dense_size": 64, "no_object_similarity": -1.0}},
            "fuser": {"maskformer": {"min_class_prob": 0.0, "object_mask_threshold": 0.0}},
        }
    )
    pipe = Pipeline(config, registry=registry_with(FakeComponentsPlugin()))
    clf = pipe.component("classifier")
    assert isinstance(clf, ClipClassifier)
    prepares = []
    original = clf.prepare
    monkeypatch.setattr(clf, "prepare", lambda image, proposals: prepares.append(1) or original(image, proposals))
    first = pipe.segment(make_shapes_image(), "red square, blue bar, floor")
    assert isinstance(first, PanopticResult) and first.image_size == (48, 64) and first.segments
    assert first.vocabulary.names == ("red square", "blue bar", "floor")
    second = pipe.segment(make_shapes_image(), "pallet, forklift")
    assert prepares == [1] and second.timings["features"] == 0.0 and second.segments
    assert any((tmp_path / "cache" / "clip-text").rglob("*.npy"))


def test_download_command_fetches_and_prints_the_checkpoint(checkpoints, tmp_path, monkeypatch, capsys):
    from ovpanoptic.cli import main

    monkeypatch.setenv("OVPANOPTIC_CACHE_DIR", str(tmp_path / "cache"))
    code = main(["download", "clip", "--model", VIT, "--set", f"classifier.clip.pretrained={str(checkpoints[VIT])!r}"])
    assert code == 0
    assert capsys.readouterr().out.strip() == f"clip: {checkpoints[VIT]}"


@pytest.mark.weights
@pytest.mark.skipif(os.environ.get("OVPANOPTIC_TEST_WEIGHTS") != "1", reason="needs real CLIP weights (OVPANOPTIC_TEST_WEIGHTS=1)")
@pytest.mark.parametrize("mode", ["crop", "dense"])
def test_real_weights_tell_colours_apart(mode, tmp_path):
    image = np.full((240, 320, 3), 128, np.uint8)
    image[40:140, 40:140] = (220, 30, 30)
    image[160:220, :] = (30, 30, 220)
    masks = np.zeros((2, 240, 320), bool)
    masks[0, 40:140, 40:140] = True
    masks[1, 160:220, :] = True
    clf = ClipClassifier(ClipConfig(mode=mode), ComponentContext(cache_dir=tmp_path, prompt_templates=TEMPLATES))
    scores = clf.score(clf.prepare(image, ProposalSet.from_masks(masks)), vocab("red square", "blue stripe"))
    assert scores.probs.argmax(axis=1).tolist() == [0, 1]


# -- the text tower runs only up to the end-of-text token (issue 16) ------------------------------


def _text_only_clip(arch: str):
    """A CLIP with ``arch``'s real text tower (random init) and a tiny image tower."""
    from open_clip.model import CLIP

    cfg = open_clip.get_model_config(arch)
    torch.manual_seed(0)
    vision = {"layers": 1, "width": 32, "head_width": 32, "patch_size": 16, "image_size": 32}
    return CLIP(cfg["embed_dim"], vision_cfg=vision, text_cfg=cfg["text_cfg"], quick_gelu=cfg.get("quick_gelu", False)).eval()


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted({a for a, _ in DEFAULT_MODELS.values()} | set(DEFAULT_TAGS)))
def test_trimmed_text_tower_gives_the_full_context_embeddings(arch):
    from ovpanoptic.builtins.clip.text_tower import causal_text_tower, encode_trimmed

    model = _text_only_clip(arch)
    tower = causal_text_tower(model)
    assert tower is not None, f"{arch}: the text tower is not causal with end-token pooling; trimming would change it"
    tokens = open_clip.get_tokenizer(arch)(["a photo of a dog.", "a photo of the large fire hydrant next to a road.", "tv"])
    with torch.inference_mode():
        full = model.encode_text(tokens)
        trimmed = encode_trimmed(tower, tokens)
    assert int(tokens.argmax(dim=-1).max()) + 1 < tokens.shape[1] // 4  # it did run on far fewer positions
    torch.testing.assert_close(trimmed, full, atol=2e-5, rtol=1e-5)


def test_towers_that_are_not_causal_or_pool_elsewhere_run_the_full_context(checkpoints, tmp_path):
    from ovpanoptic.builtins.clip.text_tower import causal_text_tower, encode_trimmed

    clf = make_classifier(checkpoints, tmp_path)
    model = clf.load()
    tower = causal_text_tower(model)
    assert tower is not None
    tokens = clf._state().tokenizer(["a red square", "tv"])
    with torch.inference_mode():
        # what the check guards against: without the causal mask, padding changes the embedding
        bidirectional = encode_trimmed(tower, tokens)
        mask = model.attn_mask
        model.attn_mask = torch.zeros_like(mask)
        assert causal_text_tower(model) is None
        full = model.encode_text(tokens)
        assert not torch.allclose(full, bidirectional, atol=1e-3)
        model.attn_mask = mask
        model.text_pool_type = "last"  # pools at the last position: trimming would move it
        assert causal_text_tower(model) is None
        model.text_pool_type = "argmax"
    # The classifier trims only with a tower that passed the check; else model.encode_text runs
    # on the full context.
    import dataclasses

    lengths: list[int] = []
    original = model.encode_text
    model.encode_text = lambda t, *a, **k: lengths.append(t.shape[1]) or original(t, *a, **k)
    trimmed = clf._encode_text(["a red square"])
    assert lengths == []
    clf._text = dataclasses.replace(clf._text, tower=None)
    np.testing.assert_allclose(clf._encode_text(["a red square"]), trimmed, atol=2e-5)
    assert lengths == [clf._state().tokenizer.context_length]


def test_new_names_are_encoded_in_chunks_of_similar_length(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, templates="single", text_batch_size=2)
    text = clf._state().text
    seen: list[list[str]] = []
    original = text._encode
    text._encode = lambda prompts: seen.append(list(prompts)) or original(prompts)
    long_a, long_b = "fire hydrant next to a red brick wall", "stack of wooden pallets on a metal shelf"
    text.names(["dog", long_a, "cat", long_b])
    (template,) = clf.templates
    assert seen == [[template.format("dog"), template.format("cat")], [template.format(long_a), template.format(long_b)]]


# -- names CLIP reads alike are one name (issue 27) ------------------------------------------------

#: Pairs of names open_clip's tokenizer gives the same token ids: spaces around punctuation,
#: typographic quotes (ftfy), HTML entities (html.unescape).
ALIKE = [("t-shirt", "t - shirt"), ("man's shoe", "man’s shoe"), ("salt & pepper", "salt &amp; pepper"), ("person(s)", "person ( s )")]


def clip_pipeline(checkpoints, tmp_path, monkeypatch) -> Pipeline:
    monkeypatch.setenv("OVPANOPTIC_CACHE_DIR", str(tmp_path / "cache"))
    config = Config.from_dict(
        {
            "pipeline": {"proposal_generator": "tiles", "classifier": "clip", "fuser": "maskformer", "exporters": [], "device": "cpu"},
            "classifier": {"clip": {"model": VIT, "pretrained": str(checkpoints[VIT]), "templates": "short", "dense_size": 64}},
        }
    )
    return Pipeline(config, registry=registry_with(FakeComponentsPlugin()))


def alike_message(first: str, second: str, where: tuple[str, str] = ("", "")) -> str:
    return (
        f"class name {second!r} appears twice (as {first!r}{where[0]} and {second!r}{where[1]}): the classifier 'clip' reads "
        "both names as the same text, so one of them could never win: remove or rename one"
    )


@pytest.mark.parametrize(("first", "second"), ALIKE)
def test_names_clip_reads_alike_are_refused_wherever_a_vocabulary_is_used(first, second, checkpoints, tmp_path, monkeypatch):
    pipe = clip_pipeline(checkpoints, tmp_path, monkeypatch)
    clf = pipe.component("classifier")
    both = vocab(first, second)  # Vocabulary itself lets them pass: they differ beyond case and spaces
    # What makes them one name: the tokenizer's ids, hence the embeddings, are the same.
    assert clf.name_key(first) == clf.name_key(second)
    embeddings = clf.text_embeddings(both.categories)
    assert np.array_equal(embeddings[0], embeddings[1])
    expected = alike_message(first, second)
    with pytest.raises(VocabularyError) as typed:
        pipe.vocabulary(f"{first}, {second}")
    assert str(typed.value) == expected
    for use in (
        lambda: pipe.prepare_vocabulary(both),
        lambda: pipe.segment(make_shapes_image(), both),
        lambda: pipe.segment_video(tmp_path / "not-read.mp4", both),  # refused before the video is opened
    ):
        with pytest.raises(VocabularyError) as used:
            use()
        assert str(used.value) == expected


def test_synonyms_clip_reads_alike_name_their_classes_and_distinct_names_pass(checkpoints, tmp_path, monkeypatch):
    pipe = clip_pipeline(checkpoints, tmp_path, monkeypatch)
    with pytest.raises(VocabularyError) as info:
        pipe.vocabulary("shirt|t-shirt, top|t - shirt")
    assert str(info.value) == alike_message("t-shirt", "t - shirt", (" (a synonym of 'shirt')", " (a synonym of 'top')"))
    assert pipe.vocabulary("t-shirt, tshirt, t shirt, man's shoe, man ' s shoe").names == (
        "t-shirt", "tshirt", "t shirt", "man's shoe", "man ' s shoe"
    )
    for name in pipe.registry.vocabularies:  # every shipped vocabulary holds names CLIP tells apart
        assert pipe.vocabulary(name=name).name


def test_label_studio_backend_and_demo_refuse_names_clip_reads_alike(checkpoints, tmp_path, monkeypatch):
    from ovpanoptic.demo.app import DemoApp
    from ovpanoptic.demo.state import RunRequest
    from ovpanoptic.serve.label_studio import FetchPolicy, LabelStudioBackend

    pipe = clip_pipeline(checkpoints, tmp_path, monkeypatch)
    expected = alike_message("t-shirt", "t - shirt")
    backend = LabelStudioBackend(pipe, None, FetchPolicy())
    schema = (
        '<View><Image name="img" value="$image"/><BrushLabels name="seg" toName="img">'
        '<Label value="t-shirt"/><Label value="t - shirt"/></BrushLabels></View>'
    )
    reply = backend.handle("POST", "/setup", json.dumps({"schema": schema}).encode())
    assert (reply.status, reply.body) == (400, {"error": expected})
    with pytest.raises(VocabularyError) as info:
        DemoApp(pipe).vocabulary_for(pipe, RunRequest(classes="t-shirt, t - shirt"))
    assert str(info.value) == expected


def test_the_clip_check_reads_the_classifiers_own_tokenizer_only(checkpoints, tmp_path, monkeypatch):
    """Keying names loads the tokenizer, not the model: a vocabulary is refused before any weights load."""
    pipe = clip_pipeline(checkpoints, tmp_path, monkeypatch)
    clf = pipe.component("classifier")
    pipe.vocabulary("person, car")
    assert clf._loaded is None and clf.tokenizer is not None


def test_scores_carry_the_proposals_image_features_for_reidentification(checkpoints, tmp_path):
    """segment-video re-identifies lost tracks by the classifier's own image features: score() hands
    them over (the crop embeddings, L2-normalised), and the boundary keeps them."""
    from ovpanoptic import boundary

    clf = make_classifier(checkpoints, tmp_path, RESNET, mode="crop", templates="single")
    prepared = clf.prepare(make_shapes_image(), shapes_proposals())
    scores = clf.score(prepared, vocab("cat", "dog"))
    assert scores.embeddings is not None and scores.embeddings.shape == (3, prepared.crop.shape[1])
    assert np.allclose(np.linalg.norm(scores.embeddings, axis=1), 1.0, atol=1e-5)
    assert np.allclose(scores.embeddings, prepared.crop, atol=1e-5)
    target = boundary.Target("classifier 'clip'", boundary.Origin("clip"), "")
    checked = boundary.check_scores(target, scores, 3, vocab("cat", "dog"))
    assert checked.embeddings is not None and np.array_equal(checked.embeddings, scores.embeddings)
    with pytest.raises(ValueError, match=r"ClassScores.embeddings must be None or an \(3, D\) float32 array, got \(2, 4\) float32"):
        ClassScores(scores.logits, scores.probs, scores.category_ids, embeddings=np.zeros((2, 4), np.float32))


# -- the text tower: loaded only for names the cache lacks, released after ------------------------


def _text_parameters(model) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(("visual.", "logit_")))


def test_text_tower_is_released_after_the_vocabulary_and_reloaded_only_for_new_names(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path)
    model = clf.load()
    assert _text_parameters(model) > 0 and clf.text_tower_loaded
    before = clf.text_embeddings(list(vocab("cat", "dog").categories)).copy()
    clf.prepare_vocabulary(vocab("cat", "dog"))
    assert not clf.text_tower_loaded
    assert _text_parameters(model) == 0  # the image model no longer holds the text tower
    image, proposals = make_shapes_image(), shapes_proposals()
    features = clf.prepare(image, proposals)
    calls = count_text_prompts(clf)
    scores = clf.score(features, vocab("cat", "dog"))  # cached names: the tower stays released
    assert calls == [] and not clf.text_tower_loaded
    assert scores.probs.shape == (3, 2)
    clf.prepare_vocabulary(vocab("cat", "dog"))  # a new process's cached vocabulary: nothing loads
    assert not clf.text_tower_loaded

    # A name the cache lacks loads the tower again, from the checkpoint: the same embeddings.
    fresh = make_classifier(checkpoints, tmp_path / "other-cache")
    expected = fresh.text_embeddings(list(vocab("red square", "cat").categories))
    clf.prepare_vocabulary(vocab("red square", "cat"))
    assert calls == [1] * 7  # one new name, one call per short template
    assert not clf.text_tower_loaded  # released again
    # (fresh encoded both names in one batch: batch composition moves float rounding only)
    np.testing.assert_allclose(clf.text_embeddings(list(vocab("red square", "cat").categories)), expected, atol=1e-6)
    np.testing.assert_array_equal(clf.text_embeddings(list(vocab("cat", "dog").categories)), before)
    np.testing.assert_allclose(clf.score(features, vocab("cat", "dog")).probs, scores.probs, rtol=0, atol=0)


def test_keep_text_tower_keeps_it(checkpoints, tmp_path):
    clf = make_classifier(checkpoints, tmp_path, keep_text_tower=True)
    clf.prepare_vocabulary(vocab("cat"))
    assert clf.text_tower_loaded and _text_parameters(clf.load()) > 0


def test_interactive_preset_keeps_the_text_tower_and_batch_presets_release_it():
    spec = registry_with(FakeComponentsPlugin()).component("classifier", "clip")
    for preset, keep in (("interactive", True), ("default", False), ("cpu-fast", False)):
        assert load_config(preset).component_config(spec).keep_text_tower is keep


@pytest.mark.parametrize("arch", [VIT, CONVNEXT, RESNET])
def test_shared_template_start_and_length_groups_give_the_full_context_embeddings(checkpoints, tmp_path, arch):
    """One template's prompts share their start ("a photo of a"), computed once; rows of each
    length run together: the same embeddings as the model's encode_text on the full context."""
    from ovpanoptic.builtins.clip.text_tower import causal_text_tower, encode_trimmed

    clf = make_classifier(checkpoints, tmp_path, arch, mode="crop")
    model = clf.load()
    tower = causal_text_tower(model)
    names = ["cat", "fire hydrant", "traffic light near a wall", "tv", "wall-other-merged", "person"]
    for template in ("a photo of a small {}.", "there is a {} in the scene.", "{}"):
        tokens = clf._state().tokenizer([template.format(n) for n in names])
        with torch.inference_mode():
            torch.testing.assert_close(encode_trimmed(tower, tokens), model.encode_text(tokens), atol=2e-5, rtol=1e-5)


def test_cold_vocabulary_embeddings_are_unchanged_by_template_batches(checkpoints, tmp_path):
    """Embeddings as the cache held them before (each prompt on the full context, templates
    averaged) to 2e-5."""
    clf = make_classifier(checkpoints, tmp_path, VIT, templates="short", text_cache=False)
    names = ["cat", "fire hydrant", "tv", "wall-other-merged", "person", "sky"]
    got = clf._state().text.names(names)
    model = clf.load()
    with torch.inference_mode():
        full = model.encode_text(clf._state().tokenizer([t.format(n) for n in names for t in clf.templates])).numpy()
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    expected = full.reshape(len(names), len(clf.templates), -1).sum(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)
