"""Shared fixtures: plugin packages really installed (pip) into temporary site directories."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"
COCO_SAMPLE = SHARED / "fixtures" / "coco_panoptic_sample"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _pip_install_target(target: Path, *projects: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
        "--disable-pip-version-check", "--target", str(target), *map(str, projects),
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the example plugin and the fake-components plugin are pip-installed."""
    target = tmp_path_factory.mktemp("plugin-site")
    _pip_install_target(target, ROOT / "plugins" / "ovpanoptic-example", DATA / "fake_components")
    return target


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where a plugin whose import fails is pip-installed."""
    target = tmp_path_factory.mktemp("broken-site")
    _pip_install_target(target, DATA / "broken_plugin")
    return target


@pytest.fixture(scope="session")
def faulty_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where the faulty plugin (one mistake per entry point) and the fakes are pip-installed."""
    target = tmp_path_factory.mktemp("faulty-site")
    _pip_install_target(target, DATA / "faulty_plugin", DATA / "fake_components")
    return target


@pytest.fixture(scope="session")
def namesake_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where a plugin registering built-in names (``ovpanoptic-probe``) and the fakes are pip-installed."""
    target = tmp_path_factory.mktemp("namesake-site")
    _pip_install_target(target, DATA / "namesake_plugin", DATA / "fake_components")
    return target


def _activate(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if name.startswith(("ovpanoptic_example", "ovpanoptic_fakes", "ovpanoptic_broken", "ovpanoptic_faulty", "ovpanoptic_probe")):
            del sys.modules[name]


@pytest.fixture
def with_plugins(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make the installed example + fakes plugins visible to this test (sys.path and PYTHONPATH)."""
    yield from _activate(plugin_site, monkeypatch)


@pytest.fixture
def with_broken_plugin(broken_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make the broken plugin visible to this test."""
    yield from _activate(broken_site, monkeypatch)


@pytest.fixture
def with_faulty_plugin(faulty_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make the faulty plugin visible to this test, with every start-up fault blocked (tests
    unblock the one they exercise through ``OVPANOPTIC_DISABLE_PLUGINS``)."""
    monkeypatch.setenv("OVPANOPTIC_DISABLE_PLUGINS", ",".join(FAULTY_STARTUP))
    yield from _activate(faulty_site, monkeypatch)


@pytest.fixture
def with_namesake_plugin(namesake_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make the plugin that registers built-in names (``probe``) and the fakes visible to this test."""
    yield from _activate(namesake_site, monkeypatch)


#: The faulty plugin's entry points that break start-up (blocked unless a test is about one of them).
FAULTY_STARTUP = (
    "faulty-raises", "faulty-positional", "faulty-keyword", "faulty-config-instance", "faulty-twice", "faulty-class",
    "faulty-unmarked", "faulty-api", "faulty-vocabulary-loader", "faulty-at-a", "faulty-at-b", "faulty-greedy-a",
    "faulty-greedy-b", "faulty-observer", "faulty-typo", "ovpanoptic-faulty:clip",
)


@pytest.fixture
def coco_sample() -> Path:
    """The two-image COCO panoptic sample in ../shared (skips when absent)."""
    if not COCO_SAMPLE.is_dir():
        pytest.skip(f"fixture data not found at {COCO_SAMPLE}")
    return COCO_SAMPLE


FAKE_OVERRIDES = (
    "pipeline.proposal_generator='tiles'",
    "pipeline.classifier='cycling'",
    "pipeline.fuser='paint'",
    "pipeline.exporters=['fake-json']",
)


def outputs(folder: Path) -> list[str]:
    """The names of the files a batch wrote into ``folder`` (its manifest left out)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name != "ovpanoptic-manifest.jsonl")


#: Tiny open_clip architectures of the tests (``open_clip.add_model_config`` reads their JSON).
CLIP_MODELS_DIR = DATA / "clip_models"
CLIP_TEST_ARCHITECTURES = ("ovp-test-vit", "ovp-test-convnext", "ovp-test-resnet")


@pytest.fixture(scope="session")
def clip_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny open_clip architectures at random init (seed 0 each), saved as checkpoints:
    ``{architecture: path}``; their configs are registered with open_clip."""
    open_clip = pytest.importorskip("open_clip")
    import torch

    open_clip.add_model_config(CLIP_MODELS_DIR)
    out = tmp_path_factory.mktemp("clip-checkpoints")
    paths = {}
    for arch in CLIP_TEST_ARCHITECTURES:
        torch.manual_seed(0)
        paths[arch] = out / f"{arch}.pt"
        torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), paths[arch])
    return paths


@pytest.fixture(scope="session")
def sam2_tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SAM 2.1 hiera-tiny at random init (seed 0), saved like the official checkpoints."""
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def small_coco(folder: Path) -> Path:
    """A one-image COCO panoptic set in ``folder`` (image ``a``, 24 x 20) of two classes: a 6 x 6
    ``box`` (thing, segment 1, 36 px) on ``floor`` (stuff, segment 2, 444 px); its ``panoptic.json``."""
    import json

    import numpy as np
    from PIL import Image

    pm = np.full((20, 24), 2, np.int64)
    pm[2:8, 2:8] = 1
    (folder / "panoptic").mkdir(parents=True)
    Image.fromarray(np.stack([pm % 256, pm // 256, pm * 0], axis=-1).astype(np.uint8)).save(folder / "panoptic" / "a.png")
    segments = [{"id": 1, "category_id": 1, "iscrowd": 0, "area": 36}, {"id": 2, "category_id": 2, "iscrowd": 0, "area": 444}]
    (folder / "panoptic.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 24, "height": 20}],
        "annotations": [{"image_id": 1, "file_name": "a.png", "segments_info": segments}],
        "categories": [{"id": 1, "name": "box", "isthing": 1}, {"id": 2, "name": "floor", "isthing": 0}],
    }))
    return folder / "panoptic.json"
