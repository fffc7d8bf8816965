"""Every model stage on a CUDA GPU gives the CPU's outputs: float32 up to float rounding, bfloat16
within its tolerance; and ``device = "auto"`` there picks the GPU and its device profile.

Skipped where torch sees no CUDA device (CI, the 2-core development machine); run on a GPU
machine with ``bin/test tests/test_cuda.py``. Same random-init architectures and checkpoints as
``test_sam2.py`` / ``test_clip.py``, loaded through the product's loading path.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from ovpanoptic.builtins.clip import ClipConfig  # noqa: E402
from ovpanoptic.builtins.clip.classifier import ClipClassifier  # noqa: E402
from ovpanoptic.builtins.clip.templates import TEMPLATE_SETS  # noqa: E402
from ovpanoptic.builtins.sam2 import FastSam2Generator, Sam2Config, Sam2FastConfig, StockSam2Generator  # noqa: E402
from ovpanoptic.components import ComponentContext  # noqa: E402
from ovpanoptic.pipeline import Pipeline  # noqa: E402
from ovpanoptic.testing import make_shapes_image, matched_ious  # noqa: E402
from ovpanoptic.types import Category, ProposalSet, Vocabulary  # noqa: E402

pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

VIT, CONVNEXT = "ovp-test-vit", "ovp-test-convnext"
TEMPLATES = {name: templates for name, (templates, _) in TEMPLATE_SETS.items()}


@pytest.fixture(scope="module")
def sam2_checkpoint(sam2_tiny_checkpoint):
    return sam2_tiny_checkpoint


@pytest.fixture(scope="module")
def image():
    return np.array(Image.fromarray(make_shapes_image(96, 128)).resize((160, 120)))


def sam2_settings(checkpoint, **kw):
    # Thresholds at 0 keep every mask (16 prompts x 3 outputs), so no mask depends on which side
    # of a threshold bf16 rounding puts it.
    base = dict(
        model=str(checkpoint), points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    base.update(kw)
    return base


@pytest.mark.parametrize(("precision", "min_iou", "score_tol"), [("float32", 0.99, 1e-3), ("bfloat16", 0.9, 3e-2)])
def test_fast_sam2_on_cuda_gives_the_cpu_proposals(sam2_checkpoint, image, precision, min_iou, score_tol):
    cpu = FastSam2Generator(Sam2FastConfig(**sam2_settings(sam2_checkpoint)), ComponentContext("cpu")).generate(image)
    gpu = FastSam2Generator(
        Sam2FastConfig(**sam2_settings(sam2_checkpoint, precision=precision, decoder_batch=64)), ComponentContext("cuda")
    ).generate(image)
    assert len(cpu) == len(gpu) == 48
    assert float(np.median(matched_ious(cpu.masks, gpu.masks))) >= min_iou
    np.testing.assert_allclose(np.sort(cpu.scores), np.sort(gpu.scores), atol=score_tol)


def test_stock_sam2_on_cuda_gives_the_cpu_proposals(sam2_checkpoint, image):
    settings = sam2_settings(sam2_checkpoint, pred_iou_thresh=0.49)
    cpu = StockSam2Generator(Sam2Config(**settings), ComponentContext("cpu")).generate(image)
    gpu = StockSam2Generator(Sam2Config(**settings), ComponentContext("cuda")).generate(image)
    assert len(cpu) == len(gpu) > 0
    assert min(matched_ious(cpu.masks, gpu.masks)) >= 0.99


def _classifier(checkpoints, tmp_path, device, arch, **options):
    config = ClipConfig(model=arch, pretrained=str(checkpoints[arch]), templates="short", dense_size=64, **options)
    context = ComponentContext(device, cache_dir=tmp_path / device, offline=True, prompt_templates=TEMPLATES)
    return ClipClassifier(config, context)


def _proposals() -> ProposalSet:
    masks = np.zeros((3, 48, 64), bool)
    masks[0, 8:24, 8:24] = True
    masks[1, 30:44, 10:60] = True
    masks[2, 0:6, 40:60] = True
    return ProposalSet.from_masks(masks)


@pytest.mark.parametrize(
    ("arch", "mode", "precision", "min_cos"),
    [(VIT, "dense", "float32", 0.9999), (CONVNEXT, "dense", "float32", 0.9999), (VIT, "crop", "float32", 0.9999),
     (CONVNEXT, "dense", "bfloat16", 0.99), (VIT, "crop", "bfloat16", 0.99)],
)
def test_clip_on_cuda_gives_the_cpu_embeddings(clip_checkpoints, tmp_path, arch, mode, precision, min_cos):
    image = make_shapes_image()
    cpu = _classifier(clip_checkpoints, tmp_path, "cpu", arch, mode=mode).prepare(image, _proposals())
    gpu = _classifier(clip_checkpoints, tmp_path, "cuda", arch, mode=mode, precision=precision).prepare(image, _proposals())
    a, b = (cpu.dense, gpu.dense) if mode == "dense" else (cpu.crop, gpu.crop)
    cos = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= min_cos, cos


def test_text_embeddings_on_cuda_match_the_cpu(clip_checkpoints, tmp_path):
    names = [Category(1, "red square", True), Category(2, "a very long name of a kind of pallet", True, synonyms=("skid",))]
    cpu = _classifier(clip_checkpoints, tmp_path, "cpu", VIT).text_embeddings(names)
    gpu = _classifier(clip_checkpoints, tmp_path, "cuda", VIT).text_embeddings(names)
    np.testing.assert_allclose(cpu, gpu, atol=1e-4)


def test_auto_device_picks_the_gpu_and_its_profile(sam2_checkpoint, clip_checkpoints, image, tmp_path, monkeypatch):
    monkeypatch.setenv("OVPANOPTIC_CACHE_DIR", str(tmp_path / "cache"))
    pipe = Pipeline(
        "default",
        overrides=[
            f"proposal_generator.sam2.model='{sam2_checkpoint}'",
            "proposal_generator.sam2.pred_iou_thresh=0.49",
            "proposal_generator.sam2.stability_score_thresh=0.5",
            "proposal_generator.sam2.stability_score_offset=0.05",
            f"classifier.clip.model={VIT}",
            f"classifier.clip.pretrained='{clip_checkpoints[VIT]}'",
            "classifier.clip.dense_size=64",
        ],
    )
    assert pipe.device == "cuda"
    major, _ = torch.cuda.get_device_capability()
    assert pipe.device_profile.name == ("cuda" if major >= 8 else "cuda-fp32")
    generator = pipe.component("proposal_generator")
    assert (generator.config.points_per_side, generator.config.adaptive) == (32, False)
    assert generator.config.precision == ("bfloat16" if major >= 8 else "float32")
    vocab = Vocabulary((Category(1, "square", True), Category(2, "floor", False)))
    result = pipe.segment(image, vocab)
    assert result.panoptic_map.shape == image.shape[:2]
    assert next(generator.loader.get().parameters()).device.type == "cuda"
    assert pipe.batch_size == (8 if major >= 8 else 4)  # the profile's, once the device is resolved


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_batch_through_sam2_on_cuda_gives_the_proposals_of_single_images(sam2_checkpoint, image, precision):
    """Issue 25: SAM 2's image encoder over 3 images in one pass on the GPU, against one at a time."""
    settings = Sam2FastConfig(**sam2_settings(sam2_checkpoint, precision=precision, decoder_batch=64))
    single, batched = FastSam2Generator(settings, ComponentContext("cuda")), FastSam2Generator(settings, ComponentContext("cuda"))
    images = [np.roll(image, 7 * i, axis=1) for i in range(3)]
    batched.encode_batch(images)
    for one in images:
        want, got = single.generate(one), batched.generate(one)
        assert len(want) == len(got) == 48
        assert float(np.median(matched_ious(want.masks, got.masks))) >= 0.99
        np.testing.assert_allclose(np.sort(want.scores), np.sort(got.scores), atol=1e-2 if precision == "bfloat16" else 1e-4)


@pytest.mark.parametrize(("arch", "precision"), [(VIT, "float32"), (CONVNEXT, "float32"), (CONVNEXT, "bfloat16")])
def test_a_batch_through_clip_on_cuda_gives_the_features_of_single_images(clip_checkpoints, tmp_path, arch, precision):
    single = _classifier(clip_checkpoints, tmp_path, "cuda", arch, mode="dense", precision=precision)
    batched = _classifier(clip_checkpoints, tmp_path, "cuda", arch, mode="dense", precision=precision)
    images = [np.roll(make_shapes_image(), 5 * i, axis=1) for i in range(3)]
    batched.encode_batch(images)
    for one in images:
        a, b = single.prepare(one, _proposals()).dense, batched.prepare(one, _proposals()).dense
        cos = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() >= (0.999 if precision == "bfloat16" else 0.99999), cos
