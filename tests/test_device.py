"""Device-aware speed defaults (``configs/devices/``), lazy device resolution, and commands that
need no model never importing torch (issue 16)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ovpanoptic.components import ComponentContext
from ovpanoptic.config import Config, build_dataclass, list_device_profiles, load_device_profile
from ovpanoptic.device import DeviceInfo, cpu_flags, describe_device
from ovpanoptic.errors import ConfigError
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.plugins import Registry
from ovpanoptic.testing import FakeComponentsPlugin, registry_with

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "fixtures" / "coco_panoptic_sample"

X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sha2 crc32 atomics bf16 i8mm sve\n"


# -- what the device is ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cpuinfo", "bf16", "profile", "reason"),
    [
        (X86_BF16, True, "cpu-bf16", "CPU with native bfloat16 (avx512_bf16)"),
        (X86_AVX2, False, "cpu", "CPU without bfloat16 instructions (avx2): float32"),
        (ARM_BF16, True, "cpu-bf16", "CPU with native bfloat16 (bf16)"),
        ("", False, "cpu", "CPU without bfloat16 instructions (flags unknown): float32"),
    ],
)
def test_cpu_bf16_is_read_from_the_instruction_set(cpuinfo, bf16, profile, reason):
    info = describe_device("cpu", cpuinfo)
    assert (info.bf16, info.profile, info.reason) == (bf16, profile, reason)


def test_avx512_without_bf16_is_not_bf16():
    # AVX-512 CPUs without avx512_bf16 emulate bf16 (torch's mkldnn check says "supported"):
    # the trap the issue measured at 15x slower.
    assert cpu_flags("flags : avx2 avx512f avx512bw avx512vl\n") == {"avx2", "avx512f", "avx512bw", "avx512vl"}
    assert describe_device("cpu", "flags : avx2 avx512f avx512bw avx512vl\n").profile == "cpu"


@pytest.mark.parametrize(
    ("kind", "bf16", "profile"), [("cuda", True, "cuda"), ("cuda", False, "cuda-fp32"), ("mps", False, "mps")]
)
def test_accelerators_map_to_their_profiles(kind, bf16, profile):
    assert DeviceInfo(kind, kind, bf16, "").profile == profile


# -- profiles ----------------------------------------------------------------------------------------


def test_shipped_profiles_load_and_validate_against_the_components():
    assert sorted(list_device_profiles()) == ["cpu", "cpu-bf16", "cuda", "cuda-fp32", "mps"]
    registry = Registry.create()
    for name in list_device_profiles():
        profile = load_device_profile(name)
        assert profile.tables, name
        for kind, tables in profile.tables.items():
            for component, table in tables.items():
                spec = registry.component(kind, component)
                build_dataclass(spec.config_class, table, f"{name}: {kind}.{component}")
    assert dict(load_device_profile("cpu").table("proposal_generator", "sam2")) == {
        "points_per_side": 16, "adaptive": True, "precision": "float32"
    }
    assert load_device_profile("cuda").table("proposal_generator", "sam2")["points_per_side"] == 32


def test_bad_profiles_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^no device profile named 'cpu-bf'\. Did you mean 'cpu-bf16'\? Device profiles: cpu, cpu-bf16, cuda, cuda-fp32, mps; or 'auto', 'none' or the path of a .toml file$"):
        load_device_profile("cpu-bf")
    bad = tmp_path / "mine.toml"
    named = f"^device profile {re.escape(str(bad))}: "
    for text, message in (
        ("[pipeline]\ndevice = 'cpu'\n", r": \[pipeline\] key 'device' cannot be set by a device profile\. A profile's \[pipeline\] may set "
                                         r"only tracker and batch_size; put other pipeline settings in a preset$"),
        ("[pipeline]\ntrackr = 'hold'\n", r"key 'trackr' cannot be set by a device profile\. Did you mean 'tracker'\? "),
        ("[pipeline]\nbatch_size = 0\n", named + r"pipeline.batch_size must be 1 to 64 images, got 0 "),
        ("[pipeline]\nbatch_size = '8'\n", r"batch_size: expected an integer, got '8' \(images per encoder pass, 1 to 64, e.g. 8 on a large GPU\)$"),
        ("[pipeline]\ntracker = ''\n", named + r"pipeline\.tracker must name a component$"),
        ("[proposal_generators.sam2]\npoints_per_side = 8\n", r"unknown section \[proposal_generators\].*Did you mean \[proposal_generator\]"),
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_device_profile(bad)


def test_device_profiles_choose_the_tracker_unless_the_config_states_one():
    """Issue 26: the CUDA profiles pick sam2-video, the CPU ones flow; a tracker the preset, file,
    --set or --tracker states wins, even when it is the default's own name."""
    assert {name: dict(load_device_profile(name).pipeline) for name in list_device_profiles()} == {
        "cpu": {"tracker": "flow"}, "cpu-bf16": {}, "cuda": {"tracker": "sam2-video", "batch_size": 8},
        "cuda-fp32": {"tracker": "sam2-video", "batch_size": 4}, "mps": {},
    }

    def tracker(*overrides: str) -> str:
        return Pipeline("default", overrides=list(overrides), device="cpu").tracker

    assert tracker("pipeline.device_profile=cuda") == "sam2-video"
    assert tracker("pipeline.device_profile=cuda-fp32") == "sam2-video"
    assert tracker("pipeline.device_profile=cpu") == "flow"
    assert tracker("pipeline.device_profile=mps") == "flow"  # no [pipeline]: the default
    assert tracker("pipeline.device_profile=none") == "flow"
    assert tracker("pipeline.device_profile=cuda", "pipeline.tracker=hold") == "hold"
    assert tracker("pipeline.tracker=flow", "pipeline.device_profile=cuda") == "flow"
    stated = Config.from_dict({"pipeline": {"tracker": "flow"}}, "mine.toml")
    pipe = Pipeline(stated.with_overrides(["pipeline.device_profile=cuda"]), device="cpu")
    assert (pipe.config.stated, pipe.tracker) == ({"tracker", "device_profile", "device"}, "flow")


def test_presets_command_shows_the_tracker_a_named_profile_chooses(capsys):
    import json

    from ovpanoptic.cli import main

    assert main(["presets", "default", "--set", "pipeline.device_profile=cuda"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["pipeline"]["tracker"], "sam2-video" in data["tracker"], data["pipeline"]["batch_size"]) == ("sam2-video", True, 8)
    assert main(["presets", "default", "--set", "pipeline.device_profile=cuda", "--set", "pipeline.tracker=flow",
                 "--set", "pipeline.batch_size=2"]) == 0
    stated = json.loads(capsys.readouterr().out)["pipeline"]
    assert (stated["tracker"], stated["batch_size"]) == ("flow", 2)


def sam2_config(*overrides: str, device: str = "cpu"):
    pipe = Pipeline("default", overrides=list(overrides), device=device)
    spec = pipe.registry.component("proposal_generator", "sam2")
    return pipe.config.component_config(spec, pipe._profile_defaults("proposal_generator", "sam2"))


def test_profile_sits_between_the_dataclass_defaults_and_the_config():
    cfg = sam2_config("pipeline.device_profile=cpu")
    assert (cfg.points_per_side, cfg.adaptive, cfg.precision) == (16, True, "float32")
    cfg = sam2_config("pipeline.device_profile=cuda")  # a profile may be chosen by name on any device
    assert (cfg.points_per_side, cfg.adaptive, cfg.precision, cfg.decoder_batch) == (32, False, "bfloat16", 256)
    cfg = sam2_config("pipeline.device_profile=cpu", "proposal_generator.sam2.points_per_side=8")
    assert (cfg.points_per_side, cfg.adaptive) == (8, True)  # --set wins, the rest still comes from the profile
    cfg = sam2_config("pipeline.device_profile=none")
    assert (cfg.points_per_side, cfg.adaptive, cfg.precision) == (32, False, "float32")  # Sam2FastConfig's defaults


def test_auto_profile_follows_the_cpu(monkeypatch):
    import ovpanoptic.pipeline as pipeline_module

    for cpuinfo, expected in ((X86_AVX2, "float32"), (X86_BF16, "bfloat16")):
        monkeypatch.setattr(pipeline_module, "describe_device", lambda device, _c=cpuinfo: describe_device(device, _c))
        cfg = sam2_config()
        assert (cfg.points_per_side, cfg.adaptive, cfg.precision) == (16, True, expected)


def test_cpu_fast_keeps_its_own_values_under_any_profile():
    pipe = Pipeline("cpu-fast", overrides=["pipeline.device_profile=cuda"], device="cpu")
    spec = pipe.registry.component("proposal_generator", "sam2")
    cfg = pipe.config.component_config(spec, pipe._profile_defaults("proposal_generator", "sam2"))
    assert (cfg.points_per_side, cfg.adaptive, cfg.precision) == (16, True, "bfloat16")


def test_verbose_log_says_which_values_the_profile_chose(caplog):
    caplog.set_level(logging.INFO, logger="ovpanoptic")
    sam2_config("pipeline.device_profile=cpu", "proposal_generator.sam2.adaptive=false")
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("proposal_generator.sam2: device profile")]
    source = ROOT / "configs" / "devices" / "cpu.toml"
    assert line == (
        f"proposal_generator.sam2: device profile 'cpu' from {source} (pipeline.device_profile = 'cpu'): "
        "points_per_side=16, precision='float32'; the config's own value kept for adaptive"
    )


def test_a_profile_for_another_device_warns_and_typos_in_it_are_errors(caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="ovpanoptic")
    sam2_config("pipeline.device_profile=cuda")  # on a CPU
    assert "device profile 'cuda' is meant for another device: this run uses cpu, whose profile is" in caplog.text
    typo = tmp_path / "typo.toml"
    typo.write_text("[proposal_generator.sam22]\npoints_per_side = 8\n")
    with pytest.raises(ConfigError, match=r"\[proposal_generator.sam22\] in device profile .*typo.toml configures no installed "
                       r"proposal generator. Did you mean \[proposal_generator.sam2\]\?"):
        Pipeline("default", overrides=[f"pipeline.device_profile='{typo}'"], device="cpu").check()
    bad_key = tmp_path / "key.toml"
    bad_key.write_text("[proposal_generator.sam2]\npoints_per_sid = 8\n")
    with pytest.raises(ConfigError, match=r"proposal_generator.sam2 of device profile .*key.toml"):
        Pipeline("default", overrides=[f"pipeline.device_profile='{bad_key}'"], device="cpu").check()


def test_a_broken_profile_that_is_not_chosen_does_not_matter(tmp_path, monkeypatch):
    (tmp_path / "devices").mkdir()
    (tmp_path / "devices" / "mps.toml").write_text("not toml [")
    monkeypatch.setenv("OVPANOPTIC_CONFIG_PATH", str(tmp_path))
    cfg = sam2_config()  # auto on this CPU: cpu or cpu-bf16
    assert (cfg.points_per_side, cfg.adaptive) == (16, True)


# -- no torch unless a model needs it ----------------------------------------------------------------


def test_context_resolves_the_device_on_first_read_only():
    import copy
    import dataclasses
    import pickle

    calls = []
    ctx = ComponentContext(None, cache_dir=Path("x"), resolve_device=lambda: calls.append(1) or "cpu")
    assert calls == []
    assert ctx.device == "cpu" and ctx.device == "cpu" and calls == [1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.offline = True  # type: ignore[misc]
    # still a frozen dataclass for plugin authors: equality, replace, copy, pickle
    plain = ComponentContext("cpu", Path("x"))
    assert ctx == plain and dataclasses.replace(ctx, offline=True).offline is True
    assert copy.deepcopy(ctx) == ctx and pickle.loads(pickle.dumps(ctx)) == plain
    assert ComponentContext("cuda:1").device == "cuda:1" and ComponentContext().device == "cpu"
    assert ComponentContext("cuda", resolve_device=lambda: "cpu").device == "cuda"  # a given device wins
    with pytest.raises(ValueError, match="needs a device"):
        ComponentContext(None)
    with pytest.raises(ValueError, match="resolve_device must return a device string"):
        ComponentContext(None, resolve_device=lambda: None).device  # noqa: B018


def test_model_free_pipeline_never_resolves_the_device(monkeypatch):
    import ovpanoptic.pipeline as pipeline_module

    def boom(spec):
        raise AssertionError("resolve_device called")

    monkeypatch.setattr(pipeline_module, "resolve_device", boom)
    config = Config.from_dict({"pipeline": {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint"}})
    pipe = Pipeline(config, registry=registry_with(FakeComponentsPlugin()))
    result = pipe.segment(np.zeros((64, 64, 3), np.uint8), "person, road")
    assert len(result.segments) > 0


PROBE = """
import contextlib, io, runpy, sys
sys.argv = ["ovpanoptic", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()):
    try:
        runpy.run_module("ovpanoptic", run_name="__main__")
    except SystemExit as exc:
        code = exc.code
print(code, "torch" in sys.modules)
"""


@pytest.mark.parametrize("command", [["plugins"], ["presets"], ["vocabularies"], ["presets", "default"], ["--help"]])
def test_commands_without_a_model_do_not_import_torch(command):
    out = subprocess.run([sys.executable, "-c", PROBE, *command], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["0", "False"], out.stderr[-2000:]


def test_a_model_free_segment_run_does_not_import_torch(tmp_path):
    if not SAMPLE.is_dir():
        pytest.skip(f"fixture data not found at {SAMPLE}")
    oracle = [
        f"{kind}.oracle.{key}={SAMPLE / value}"
        for kind in ("proposal_generator", "classifier")
        for key, value in (("gt_json", "panoptic.json"), ("gt_dir", "panoptic"), ("images_dir", "images"))
    ]
    args = ["segment", str(SAMPLE / "images" / "000000142238.jpg"), "--classes", "person, car", "-o", str(tmp_path / "out"),
            "--set", "pipeline.proposal_generator=oracle", "--set", "pipeline.classifier=oracle",
            "--set", "pipeline.fuser=maskformer", "--set", "pipeline.exporters=['coco-panoptic']", "--set", "pipeline.max_side=0"]
    for o in oracle:
        args += ["--set", o]
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["0", "False"], out.stderr[-2000:]
    assert (tmp_path / "out" / "panoptic.json").is_file()


def test_a_named_profile_is_checked_before_anything_runs(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text("[proposal_generator.sam2]\npoints_per_sid = 8\n")
    pipe = Pipeline("default", overrides=[f"pipeline.device_profile='{bad}'"], device="cpu")
    with pytest.raises(ConfigError, match=r"points_per_sid.*points_per_side"):
        pipe.check()
    with pytest.raises(ConfigError, match=r"^no device profile named 'gpu'"):
        Pipeline("default", overrides=["pipeline.device_profile=gpu"], device="cpu").check()


def test_presets_show_a_named_profile_and_refuse_unknown_ones(capsys):
    import json

    from ovpanoptic.cli import main

    assert main(["presets", "default", "--set", "pipeline.device_profile=cpu"]) == 0
    shown = json.loads(capsys.readouterr().out)
    sam2 = shown["proposal_generator"]["sam2"]
    assert (sam2["points_per_side"], sam2["adaptive"]) == (16, True)
    assert main(["presets", "default"]) == 0
    assert "device_profile = 'auto'" in capsys.readouterr().err
    assert main(["presets", "default", "--set", "pipeline.device_profile=nope"]) == 2
    assert "no device profile named 'nope'" in capsys.readouterr().err


def test_names_without_readable_tokens_are_refused():
    from ovpanoptic.builtins.clip.text import TextEmbeddings
    from ovpanoptic.errors import VocabularyError

    text = TextEmbeddings(lambda p: np.zeros((len(p), 4), np.float32), ["a photo of a {}."],
                          count_tokens=lambda s: 2 if not s.strip("\u200b") else 3, context_length=77)
    with pytest.raises(VocabularyError, match="has no text the CLIP tokenizer can read"):
        text.check_lengths(["dog", "\u200b"])
    from ovpanoptic.vocabulary import build_vocabulary

    with pytest.raises(Exception, match="control character"):
        build_vocabulary("\x7f, dog")
