"""The plugin manager factory, blocking, clashes, broken plugins and the registry."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import pytest

from ovpanoptic import hookimpl
from ovpanoptic.cli import main
from ovpanoptic.errors import AmbiguousNameError, ComponentNotFoundError, PluginError
from ovpanoptic.plugins import BUILTIN_PLUGINS, Registry, make_plugin_manager
from ovpanoptic.testing import FakeComponentsPlugin, TilesGenerator, registry_with

from conftest import outputs


class OtherTiles:
    @hookimpl
    def register_proposal_generators(self, register):
        register("tiles", TilesGenerator, description="a clash")


class Misspelt:
    @hookimpl
    def register_fuser(self, register):  # missing the final "s"
        pass


def test_builtins_are_registered_like_plugins_and_blockable():
    pm = make_plugin_manager(entry_points=False, env={})
    names = [name for name, _ in BUILTIN_PLUGINS]
    assert names[:4] == ["vocabularies", "fusion", "exporters", "oracle"] and "clip" in names
    assert pm.origin("vocabularies") == ("ovpanoptic", pm.origin("vocabularies")[1], True)
    assert pm.get_plugin("vocabularies") is not None
    blocked = Registry(make_plugin_manager(["vocabularies", "fusion"], entry_points=False, env={}))
    assert blocked.vocabularies == {} and blocked.components["fuser"] == {}
    assert [(p.name, p.blocked) for p in blocked.plugins()] == sorted(
        (name, name in ("vocabularies", "fusion")) for name in names
    )


def test_disable_through_environment_variable():
    pm = make_plugin_manager(entry_points=False, env={"OVPANOPTIC_DISABLE_PLUGINS": " vocabularies , "})
    assert pm.is_blocked("vocabularies")


def test_disabling_an_unknown_plugin_lists_the_installed_ones():
    installed = ", ".join(sorted(name for name, _ in BUILTIN_PLUGINS))
    with pytest.raises(PluginError, match=f"cannot disable 'vocabs': no plugin has that name. Installed plugins: {installed}$"):
        make_plugin_manager(["vocabs"], entry_points=False, env={})


def test_component_registered_by_two_plugins_is_a_warning_and_an_error_only_where_used(caplog):
    message = (
        "proposal generator 'tiles' is registered by two plugins: plugin 'FakeComponentsPlugin' (registered in code) and "
        "plugin 'OtherTiles' (registered in code). Choose one by its qualified name PLUGIN:NAME (--set "
        "pipeline.proposal_generator=FakeComponentsPlugin:tiles or --set pipeline.proposal_generator=OtherTiles:tiles), "
        "or block all but one with --disable-plugin PLUGIN"
    )
    with caplog.at_level(logging.WARNING, logger="ovpanoptic.plugins"):
        registry = registry_with(FakeComponentsPlugin(), OtherTiles())
    assert [r.getMessage() for r in caplog.records] == [f"{message} (only a use of the name alone is refused; the rest works)"]
    assert registry.component("classifier", "cycling").plugin == "FakeComponentsPlugin"  # the rest works
    with pytest.raises(AmbiguousNameError) as info:
        registry.component("proposal_generator", "tiles")
    assert str(info.value) == message
    assert registry.component("proposal_generator", "OtherTiles:tiles").plugin == "OtherTiles"
    assert registry.component("proposal_generator", "FakeComponentsPlugin:tiles").plugin == "FakeComponentsPlugin"
    assert registry.component("fuser", "FakeComponentsPlugin:paint").name == "paint"  # any name may be qualified
    assert "tiles" in registry.components["proposal_generator"]
    assert sorted(registry.components["proposal_generator"]) == [
        "FakeComponentsPlugin:tiles", "OtherTiles:tiles", "oracle", "sam2", "sam2-stock",
    ]


def test_misspelt_hook_is_caught_by_check_pending():
    with pytest.raises(PluginError, match=r"^plugin 'Misspelt' \(registered in code\) implements unknown hook 'register_fuser'; did you mean 'register_fusers'\? Fix the plugin, or block it with --disable-plugin Misspelt$"):
        registry_with(Misspelt())


def test_register_plugin_fixture_registers_for_one_test(ovpanoptic_pm, register_plugin, make_registry):
    plugin = register_plugin(FakeComponentsPlugin(), name="fakes")
    reg = make_registry()
    assert reg.component("fuser", "paint").plugin == "fakes"
    assert ovpanoptic_pm.is_registered(plugin)


def test_registry_is_fresh_per_test(make_registry):
    # The plugin registered in the previous test is gone: no module-level manager.
    with pytest.raises(ComponentNotFoundError, match="fuser 'paint' is not provided by any installed, enabled plugin"):
        make_registry().component("fuser", "paint")


def test_component_lookup_suggests_close_names():
    reg = registry_with(FakeComponentsPlugin())
    with pytest.raises(ComponentNotFoundError, match="Did you mean 'tiles'.*Available: oracle, sam2, sam2-stock, tiles"):
        reg.component("proposal_generator", "tile")


def test_entry_point_plugins_are_loaded_with_their_distribution(with_plugins):
    reg = Registry.create(env={})
    infos = {p.name: p for p in reg.plugins()}
    assert infos["example"].distribution == "ovpanoptic-example"
    assert infos["example"].version == "0.1.0"
    assert infos["example"].hooks == ("register_exporters", "register_vocabulary_parsers")
    assert infos["example"].components == ("exporter: segments-csv", "vocabulary parser: @")
    assert infos["fakes"].components == (
        "classifier: cycling", "exporter: fake-json", "fuser: paint", "proposal generator: tiles",
    )
    assert infos["fakes-slow"].components == ("classifier: gated", "exporter: slow-json")
    assert infos["vocabularies"].builtin and not infos["example"].builtin


def test_broken_plugin_names_its_distribution_and_disable_recovers(with_broken_plugin, capsys):
    with pytest.raises(PluginError) as err:
        make_plugin_manager(env={})
    message = str(err.value)
    assert "plugin 'broken' from distribution 'ovpanoptic-broken' 9.9.9 failed to import" in message
    assert "ModuleNotFoundError: No module named 'ovpanoptic_dependency_that_does_not_exist'" in message
    assert "--disable-plugin broken" in message
    # The CLI reports it without a traceback, and --disable-plugin gets the user going again.
    assert main(["plugins"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["plugins", "--disable-plugin", "broken"]) == 0
    out = capsys.readouterr().out
    assert "broken [disabled]  (ovpanoptic-broken 9.9.9)" in out


def test_two_distributions_with_one_plugin_name_both_load_the_second_qualified(with_plugins, tmp_path, monkeypatch, caplog):
    dist = tmp_path / "ovpanoptic_clash-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ovpanoptic-clash\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ovpanoptic]\nexample = json\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="ovpanoptic.plugins"):
        pm = make_plugin_manager(env={})
    names = {name for name in pm.origins if name.endswith("example")}
    first, second = ("ovpanoptic-clash", "ovpanoptic-example")
    if f"{first}:example" in names:  # entry points come in the order the environment lists them
        first, second = second, first
    assert names == {"example", f"{second}:example"}
    assert pm.origins["example"][0] == first and pm.origins[f"{second}:example"][0] == second
    assert (
        f"two plugins are named 'example': one from distribution {first!r}, one from {second!r}; the second is registered as "
        f"'{second}:example' (--disable-plugin {second}:example blocks it alone, --disable-plugin example blocks both; "
        "rename its entry point to silence this)"
    ) in [r.getMessage() for r in caplog.records]
    only = make_plugin_manager(env={}, disable=[f"{second}:example"])
    assert {name for name in only.origins if name.endswith("example")} == {"example"}


def test_plugins_command_lists_builtins_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "ovpanoptic", "plugins"], capture_output=True, text=True, check=True, timeout=120
    )
    assert "vocabularies  (built-in)" in proc.stdout
    assert "provides vocabulary: coco" in proc.stdout


# -- names two plugins register: an installed plugin written before ovpanoptic had built-ins of its names

PROBE = "plugin 'probe' (distribution ovpanoptic-probe 1.0.0)"
FAKE_STAGES = ["--set", "pipeline.proposal_generator=tiles", "--set", "pipeline.classifier=cycling", "--set", "pipeline.fuser=paint"]


def _ambiguous(what, name, builtin, how):
    first, second = sorted([(builtin, f"built-in plugin {builtin!r}"), ("probe", PROBE)])
    return (
        f"{what} {name!r} is registered by two plugins: {first[1]} and {second[1]}. Choose one by its qualified name "
        f"PLUGIN:NAME ({how}{first[0]}:{name} or {how}{second[0]}:{name}), or block all but one with --disable-plugin PLUGIN"
    )


SHARED_NAMES = [  # (kind, name, built-in plugin, how it is chosen)
    ("proposal_generator", "oracle", "oracle", "--set pipeline.proposal_generator="),
    ("classifier", "oracle", "oracle", "--set pipeline.classifier="),
    ("fuser", "maskformer", "fusion", "--set pipeline.fuser="),
    ("exporter", "cityscapes", "cityscapes", "--format "),
    ("tracker", "hold", "trackers", "--set pipeline.tracker="),
]


@pytest.fixture
def shapes_png(tmp_path):
    from PIL import Image

    from ovpanoptic.testing import make_shapes_image

    path = tmp_path / "shapes.png"
    Image.fromarray(make_shapes_image()).save(path)
    return path


def test_a_builtin_name_an_installed_plugin_also_registers_fails_only_where_it_is_used(with_namesake_plugin, shapes_png, tmp_path, capsys):
    common = ["segment", str(shapes_png), "--no-progress", "--device", "cpu", *FAKE_STAGES]
    base = [*common, "--classes", "square, bar"]
    # Commands that do not use a shared name work, with one warning per shared name.
    assert main([*base, "-o", str(tmp_path / "coco"), "--format", "coco-panoptic"]) == 0
    err = capsys.readouterr().err
    for kind, name, builtin, how in SHARED_NAMES:
        what = {"proposal_generator": "proposal generator"}.get(kind, kind)
        assert f"WARNING ovpanoptic.plugins: {_ambiguous(what, name, builtin, how)} (only a use of the name alone is refused" in err
    assert "error" not in err
    assert outputs(tmp_path / "coco") == [".ovpanoptic", "panoptic", "panoptic.json"]
    # Using a shared name alone: exit 2 naming both plugins and the qualified names, nothing written.
    assert main([*base, "-o", str(tmp_path / "bare"), "--format", "cityscapes"]) == 2
    assert f"error: {_ambiguous('exporter', 'cityscapes', 'cityscapes', '--format ')}\n" in capsys.readouterr().err
    assert not (tmp_path / "bare").exists()
    assert main([*base, "-o", str(tmp_path / "fuser"), "--format", "coco-panoptic", "--set", "pipeline.fuser=maskformer"]) == 2
    assert f"error: {_ambiguous('fuser', 'maskformer', 'fusion', '--set pipeline.fuser=')}\n" in capsys.readouterr().err
    assert not (tmp_path / "fuser").exists()
    assert main([*common, "-o", str(tmp_path / "voc"), "--vocabulary", "tabletop"]) == 2
    assert f"error: {_ambiguous('vocabulary', 'tabletop', 'vocabularies', '--vocabulary ')}\n" in capsys.readouterr().err
    # The qualified name picks one; its config table may be qualified too.
    probe_run = [*base, "-o", str(tmp_path / "probe"), "--format", "probe:cityscapes", "--set", "exporter.probe:cityscapes.suffix='alt'"]
    assert main([*probe_run, "--set", "pipeline.fuser=probe:maskformer"]) == 0
    assert outputs(tmp_path / "probe") == ["shapes.alt.json"]
    capsys.readouterr()
    qualified_vocabulary = [*common, "-o", str(tmp_path / "pv"), "--vocabulary", "probe:tabletop", "--format", "fake-json"]
    assert main(qualified_vocabulary) == 0
    assert json.loads((tmp_path / "pv" / "shapes.fake.json").read_text())["vocabulary"] == "probe-tabletop"


def test_plugins_lists_both_plugins_of_a_shared_name(with_namesake_plugin, capsys):
    assert main(["plugins"]) == 0
    listing = capsys.readouterr().out
    assert "probe  (ovpanoptic-probe 1.0.0)\n" in listing
    assert "  provides exporter: cityscapes (also registered by 'probe': choose this one as cityscapes:cityscapes)\n" in listing
    assert "  provides exporter: cityscapes (also registered by 'cityscapes': choose this one as probe:cityscapes)\n" in listing
    assert main(["plugins", "probe:cityscapes"]) == 0
    assert capsys.readouterr().out.startswith("exporter cityscapes  (plugin probe, ovpanoptic-probe)\n")
    assert main(["plugins", "cityscapes"]) == 0  # the plugin named cityscapes, and both exporters of that name
    shown = capsys.readouterr().out
    assert "exporter cityscapes  (plugin cityscapes, ovpanoptic)\n" in shown and "exporter cityscapes  (plugin probe, ovpanoptic-probe)\n" in shown


@pytest.mark.parametrize(("kind", "name", "builtin", "how"), SHARED_NAMES, ids=[k for k, *_ in SHARED_NAMES])
def test_every_kind_of_shared_name_resolves_by_one_rule(with_namesake_plugin, kind, name, builtin, how):
    registry = Registry.create(env={})
    with pytest.raises(AmbiguousNameError) as info:
        registry.component(kind, name)
    assert str(info.value) == _ambiguous({"proposal_generator": "proposal generator"}.get(kind, kind), name, builtin, how)
    assert registry.component(kind, f"probe:{name}").plugin == "probe"
    assert registry.component(kind, f"{builtin}:{name}").plugin == builtin
    assert {f"probe:{name}", f"{builtin}:{name}"} <= set(registry.components[kind]) and name in registry.components[kind]


def test_shared_vocabulary_and_template_names_resolve_by_the_same_rule(with_namesake_plugin):
    registry = Registry.create(env={})
    with pytest.raises(AmbiguousNameError, match=re.escape(_ambiguous("vocabulary", "tabletop", "vocabularies", "--vocabulary "))):
        registry.vocabulary("tabletop")
    assert registry.vocabulary("probe:tabletop").name == "probe-tabletop"
    assert registry.vocabulary("vocabularies:tabletop").name != "probe-tabletop"
    templates = registry.template_sets()  # what components get as context.prompt_templates
    with pytest.raises(AmbiguousNameError, match=re.escape(_ambiguous("prompt-template set", "short", "clip", "--set classifier.NAME.templates="))):
        templates.get("short")
    assert templates["probe:short"] == ("{}",)
