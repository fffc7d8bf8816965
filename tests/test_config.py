"""Presets, config files, --set overrides and component config validation."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from ovpanoptic.config import Config, PipelineSettings, build_dataclass, list_presets, load_config, parse_override
from ovpanoptic.errors import ComponentNotFoundError, ConfigError
from ovpanoptic.testing import FakeComponentsPlugin, registry_with

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_preset_loads(path):
    config = load_config(path.stem)
    assert config.source == str(path)
    assert config.pipeline.proposal_generator == "sam2"
    assert config.pipeline.exporters  # a preset always names its default outputs


def test_presets_include_default_cpu_fast_and_interactive():
    assert {"default", "cpu-fast", "interactive"} <= set(list_presets())
    assert load_config().source.endswith("default.toml")
    assert load_config().pipeline.fuser == "detectron2"
    assert load_config("cpu-fast").pipeline.max_side == 768
    interactive = load_config("interactive")
    assert (interactive.pipeline.fuser, interactive.pipeline.max_side) == ("maskformer", 1024)
    assert interactive.to_dict()["proposal_generator"]["sam2"]["points_per_side"] == 16


def test_unknown_preset_suggests_close_match():
    with pytest.raises(ConfigError, match="no preset named 'defualt'. Did you mean 'default'"):
        load_config("defualt")
    with pytest.raises(ConfigError, match="config file nope.toml does not exist"):
        load_config("nope.toml")


def test_config_file_by_path_and_unknown_keys(tmp_path):
    good = tmp_path / "mine.toml"
    good.write_text('[pipeline]\nfuser = "paint"\nmax_side = 640\n')
    config = load_config(good)
    assert (config.pipeline.fuser, config.pipeline.max_side, config.pipeline.classifier) == ("paint", 640, "clip")
    bad = tmp_path / "bad.toml"
    bad.write_text("[pipeline]\nmax_sid = 640\n")
    with pytest.raises(ConfigError, match=r"unknown key 'max_sid' in \[pipeline\]. Did you mean 'max_side'"):
        load_config(bad)
    bad.write_text("[pipline]\n")
    with pytest.raises(ConfigError, match=r"unknown section \[pipline\].*Did you mean \[pipeline\]"):
        load_config(bad)
    bad.write_text("[pipeline\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad)


def test_set_overrides_parse_toml_values_or_strings():
    assert parse_override("pipeline.max_side=512") == (("pipeline", "max_side"), 512)
    assert parse_override("classifier.clip.mode=dense") == (("classifier", "clip", "mode"), "dense")
    assert parse_override("pipeline.exporters=['a','b']") == (("pipeline", "exporters"), ["a", "b"])
    config = load_config("default", ["pipeline.max_side=0", "pipeline.exporters=['summary']", "fuser.paint.min_score=0.25"])
    assert config.pipeline.max_side == 0 and config.pipeline.exporters == ("summary",)
    assert config.tables["fuser"]["paint"] == {"min_score": 0.25}
    with pytest.raises(ConfigError, match="is not KEY=VALUE"):
        parse_override("pipeline.max_side")
    with pytest.raises(ConfigError, match="use fuser.COMPONENT.KEY=VALUE"):
        load_config("default", ["fuser.min_score=1"])
    with pytest.raises(ConfigError, match="expected an integer, got 'big'"):
        load_config("default", ["pipeline.max_side=big"])
    with pytest.raises(ConfigError, match="max_side 8 is too small"):
        load_config("default", ["pipeline.max_side=8"])
    with pytest.raises(ConfigError, match="pipeline.device 'gpu' is invalid"):
        load_config("default", ["pipeline.device=gpu"])


@dataclass(frozen=True)
class Options:
    mode: Literal["crop", "dense"] = "crop"
    size: int = 3
    ratio: float = 0.5
    names: tuple[str, ...] = ()
    path: str | None = None

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")


def test_build_dataclass_checks_types_literals_and_own_validation():
    o = build_dataclass(Options, {"mode": "dense", "ratio": 1, "names": ["a"], "path": None}, "x")
    assert o == Options(mode="dense", size=3, ratio=1.0, names=("a",), path=None)
    with pytest.raises(ConfigError, match=r"x.mode: 'dence' is not one of 'crop', 'dense' \(did you mean 'dense'\?\)"):
        build_dataclass(Options, {"mode": "dence"}, "x")
    with pytest.raises(ConfigError, match=r"unknown key 'sise' in \[x\]. Did you mean 'size'\? Valid keys: mode, names, path, ratio, size"):
        build_dataclass(Options, {"sise": 2}, "x")
    with pytest.raises(ConfigError, match=r"invalid \[x\]: size must be >= 1, got 0"):
        build_dataclass(Options, {"size": 0}, "x")
    with pytest.raises(ConfigError, match="expected an integer, got True"):
        build_dataclass(Options, {"size": True}, "x")


def test_component_tables_are_checked_against_the_registry():
    reg = registry_with(FakeComponentsPlugin())
    config = Config.from_dict({"fuser": {"paint": {"min_score": 0.3}}, "classifier": {"not-installed": {"a": 1}}})
    with pytest.raises(ConfigError, match=r"\[classifier.not-installed\] in \(dict\) configures no registered classifier: the registered classifiers are clip, cycling, oracle"):
        config.check_tables(reg.components)
    config.check_tables(reg.components, {"classifier": frozenset({"not-installed"})})  # a blocked plugin's component: kept
    assert config.component_config(reg.component("fuser", "paint")).min_score == 0.3
    with pytest.raises(ConfigError, match=r"unknown key 'min_scor' in \[fuser.paint\]. Did you mean 'min_score'"):
        Config.from_dict({"fuser": {"paint": {"min_scor": 0.3}}}).check_tables(reg.components)
    with pytest.raises(ConfigError, match=r"\[fuser.pain\] in \(dict\) configures no installed fuser. Did you mean \[fuser.paint\]"):
        Config.from_dict({"fuser": {"pain": {}}}).check_tables(reg.components)


def test_missing_selected_component_names_it():
    reg = registry_with(FakeComponentsPlugin())
    config = load_config("default", ["pipeline.proposal_generator=sam3"])
    with pytest.raises(ComponentNotFoundError, match=r"proposal generator 'sam3' \(pipeline.proposal_generator in .*default.toml \+ --set\) is not provided by any installed, enabled plugin. Available: oracle, sam2, sam2-stock, tiles"):
        config.selected(reg.components)
    # Blocking the plugin that provides it has the same effect.
    blocked = registry_with(FakeComponentsPlugin(), disable=["sam2"])
    with pytest.raises(ComponentNotFoundError, match="proposal generator 'sam2' .* Available: oracle, tiles"):
        load_config().selected(blocked.components)


def test_pipeline_settings_defaults_live_in_the_dataclass():
    assert PipelineSettings().device == "auto"
    assert Config().pipeline == PipelineSettings()
    assert load_config("default").to_dict()["pipeline"]["device"] == "auto"


def test_a_built_wheel_carries_the_presets(tmp_path):
    """configs/ is mapped into the wheel as ovpanoptic/configs/, where list_presets finds it."""
    import os
    import subprocess
    import sys
    import zipfile

    import shutil

    root = CONFIGS.parent
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    for folder in ("ovpanoptic", "configs"):
        shutil.copytree(root / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("ovpanoptic-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n[len("ovpanoptic/configs/"):] for n in names if n.startswith("ovpanoptic/configs/"))
    assert shipped == sorted([p.name for p in CONFIGS.glob("*.toml")] + [f"devices/{p.name}" for p in CONFIGS.glob("devices/*.toml")])
    # every subpackage is in the wheel (setuptools' explicit package list)
    packages = {str(p.parent.relative_to(root)) for p in (root / "ovpanoptic").rglob("__init__.py")}
    assert {p for p in packages if not any(n.startswith(p + "/__init__.py") for n in names)} == set()
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    probe = (
        "import ovpanoptic, ovpanoptic.config as c; "
        "print(ovpanoptic.__file__); print(sorted(str(p) for p in c.list_presets().values())); "
        "print(sorted(c.list_device_profiles())); import ovpanoptic.engines.local"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=env, cwd=tmp_path).stdout
    first, presets, profiles = out.splitlines()
    assert eval(profiles) == ["cpu", "cpu-bf16", "cuda", "cuda-fp32", "mps"]
    assert first.startswith(str(tmp_path / "site"))
    assert eval(presets) == sorted(str(tmp_path / "site" / "ovpanoptic" / "configs" / p.name) for p in CONFIGS.glob("*.toml"))


def test_a_table_for_no_registered_component_is_an_error_unless_its_plugin_is_blocked(capsys) -> None:
    from ovpanoptic.cli import main
    from ovpanoptic.plugins import Registry

    for kind, what in (("refiner", "refiners are cleanup"), ("fuser", "fusers are ")):
        assert main(["presets", "default", "--set", f"{kind}.nope.x=5"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: [{kind}.nope] in ") and f"configures no registered {kind}: the registered {what}" in err
        assert "--disable-plugin excuses only a table for a component of the blocked plugin" in err
    blocked = Registry.create(["refiners"]).blocked_components()
    assert "cleanup" in blocked["refiner"] and "refiners:cleanup" in blocked["refiner"]
    assert main(["presets", "default", "--disable-plugin", "refiners", "--set", "refiner.cleanup.x=5"]) == 0
