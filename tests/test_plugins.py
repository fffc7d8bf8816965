"""The plugin manager factory, blocking, clashes, broken plugins and the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ovpanoptic import hookimpl
from ovpanoptic.cli import main
from ovpanoptic.errors import ComponentNotFoundError, PluginError
from ovpanoptic.plugins import BUILTIN_PLUGINS, Registry, make_plugin_manager
from ovpanoptic.testing import FakeComponentsPlugin, TilesGenerator, registry_with


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


def test_component_registered_twice_names_both_plugins():
    with pytest.raises(PluginError, match="proposal generator 'tiles' is registered by two plugins: 'FakeComponentsPlugin' and 'OtherTiles'"):
        registry_with(FakeComponentsPlugin(), OtherTiles())


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
    assert infos["fakes-slow"].components == ("exporter: slow-json",)
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


def test_two_distributions_with_one_plugin_name_is_an_error(with_plugins, tmp_path, monkeypatch):
    dist = tmp_path / "ovpanoptic_clash-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ovpanoptic-clash\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ovpanoptic]\nexample = json\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="two plugins are named 'example': one from distribution 'ovpanoptic-(example|clash)'"):
        make_plugin_manager(env={})


def test_plugins_command_lists_builtins_in_a_subprocess():
    proc = subprocess.run(
        [sys.executable, "-m", "ovpanoptic", "plugins"], capture_output=True, text=True, check=True, timeout=120
    )
    assert "vocabularies  (built-in)" in proc.stdout
    assert "provides vocabulary: coco" in proc.stdout
