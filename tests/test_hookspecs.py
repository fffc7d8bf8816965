"""Every hook is typed, documented in docs/plugins.md and exercised by a test_hook_<name> test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from ovpanoptic import hookimpl, hookspecs
from ovpanoptic.config import Config
from ovpanoptic.errors import ConfigError, PluginError, VocabularyError
from ovpanoptic.pipeline import Pipeline
from ovpanoptic.testing import FakeComponentsPlugin, registry_with
from ovpanoptic.types import Category, Vocabulary

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TESTS = Path(__file__).resolve().parent


def hook_specs():
    return {
        name: fn for name, fn in vars(hookspecs).items() if callable(fn) and hasattr(fn, "ovpanoptic_spec")
    }


def signature_text(name, fn):
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"{name}({params}) -> {sig.return_annotation}"


def test_every_hook_is_typed_documented_and_tested():
    specs = hook_specs()
    assert len(specs) == 11
    docs = DOCS.read_text()
    test_source = "\n".join(p.read_text() for p in TESTS.glob("test_*.py"))
    for name, fn in specs.items():
        sig = inspect.signature(fn)
        assert all(p.annotation is not inspect.Parameter.empty for p in sig.parameters.values()), name
        assert sig.return_annotation is not inspect.Signature.empty, name
        assert fn.__doc__ and ":return:" in fn.__doc__, f"{name} needs a docstring with :return:"
        assert f"### `{signature_text(name, fn)}`" in docs, f"docs/plugins.md lacks a section for {name}"
        assert re.search(rf"def test_hook_{name}\b", test_source), f"no test_hook_{name} test"


def test_every_optional_component_method_is_documented():
    """Each optional Protocol (beyond the four kinds' own) has a docstring and a row in docs/plugins.md."""
    from ovpanoptic import components

    own = {"ProposalGenerator", "Classifier", "Fuser", "Exporter", "Tracker", "Refiner"}
    optional = [
        n for n in components.__all__ if getattr(getattr(components, n), "_is_runtime_protocol", False) and n not in own
    ]
    assert {"PromptSegmenter", "VocabularyPreparer", "Downloadable"} <= set(optional)
    docs = DOCS.read_text()
    for name in optional:
        protocol = getattr(components, name)
        methods = [m for m, v in vars(protocol).items() if callable(v) and not m.startswith("_")]
        assert protocol.__doc__ and methods and all(getattr(protocol, m).__doc__ for m in methods), name
        assert all(re.search(rf"\| `{m}\(.*\)` \(`{name}`\) \|", docs) for m in methods), f"docs/plugins.md lacks a row for {name}"


def test_firstresult_hooks_say_so_in_their_docs():
    for name, fn in hook_specs().items():
        if fn.ovpanoptic_spec["firstresult"]:
            assert "first non-``None`` result" in fn.__doc__, name


def test_hook_register_vocabularies():
    class Warehouse:
        @hookimpl
        def register_vocabularies(self, register):
            register(
                "warehouse",
                lambda: Vocabulary((Category(1, "forklift", True), Category(2, "floor", False)), name="warehouse"),
                description="forklifts",
            )

    reg = registry_with(Warehouse())
    assert reg.vocabularies["warehouse"].plugin == "Warehouse"
    assert reg.vocabulary("warehouse").names == ("forklift", "floor")


def test_hook_register_proposal_generators():
    spec = registry_with(FakeComponentsPlugin()).component("proposal_generator", "tiles")
    assert (spec.plugin, spec.description) == ("FakeComponentsPlugin", "grid of tiles (tests)")


def test_hook_register_classifiers():
    spec = registry_with(FakeComponentsPlugin()).component("classifier", "cycling")
    assert spec.config_class.__name__ == "CyclingConfig"


def test_hook_register_fusers():
    assert registry_with(FakeComponentsPlugin()).component("fuser", "paint").name == "paint"


def test_hook_register_exporters():
    assert registry_with(FakeComponentsPlugin()).component("exporter", "fake-json").plugin == "FakeComponentsPlugin"


def test_hook_register_refiners():
    class Drop:
        def __init__(self, config, context):
            pass

        def refine(self, result, image):
            return result

    class Refiners:
        @hookimpl
        def register_refiners(self, register):
            register("keep", Drop, description="returns the result as it is")

    reg = registry_with(Refiners())
    spec = reg.component("refiner", "keep")
    assert (spec.kind, spec.plugin, spec.description) == ("refiner", "Refiners", "returns the result as it is")
    assert reg.component("refiner", "cleanup").plugin == "refiners"  # the built-in, registered the same way


def test_hook_register_trackers():
    from ovpanoptic.types import TrackMasks

    class Still:
        def __init__(self, config, context):
            pass

        def track(self, frames, seeds, *, progress=None):
            for _ in frames[1:]:
                yield seeds

    class Trackers:
        @hookimpl
        def register_trackers(self, register):
            register("still", Still, description="keeps masks")

    reg = registry_with(Trackers())
    assert reg.component("tracker", "still").plugin == "Trackers"
    assert {"flow", "sam2-video", "hold"} <= set(reg.components["tracker"])
    pipe = Pipeline(Config.from_dict({"pipeline": {"tracker": "still"}}), registry=reg, device="cpu")
    seeds = TrackMasks(np.array([4], np.int64), np.ones((1, 2, 2), bool))
    assert [m.ids.tolist() for m in pipe.component("tracker").track([np.zeros((2, 2, 3), np.uint8)] * 3, seeds)] == [[4], [4]]

    class NoTrack:
        @hookimpl
        def register_trackers(self, register):
            register("mute", lambda config, context: object())

    pipe = Pipeline(Config.from_dict({"pipeline": {"tracker": "mute"}}), registry=registry_with(NoTrack()), device="cpu")
    with pytest.raises(PluginError, match=r"has no track\(\)"):
        pipe.component("tracker")


def test_hook_register_prompt_templates():
    class Templates:
        @hookimpl
        def register_prompt_templates(self, register):
            register("plain", ["{}", "a {}."], description="two templates")

    reg = registry_with(Templates())
    assert reg.prompt_templates["plain"] == (("{}", "a {}."), "two templates", "Templates")

    class Bad:
        @hookimpl
        def register_prompt_templates(self, register):
            register("broken", ["no placeholder"])

    with pytest.raises(PluginError, match="prompt templates 'broken' must be a non-empty list of strings with exactly one"):
        registry_with(Bad())
    shared = registry_with(Templates(), type("Templates2", (Templates,), {})())  # a warning: refused where used
    with pytest.raises(ConfigError, match=r"^prompt-template set 'plain' is registered by two plugins: plugin 'Templates' \(registered in code\) and plugin 'Templates2' \(registered in code\)\. Choose one by its qualified name PLUGIN:NAME \(--set classifier\.NAME\.templates=Templates:plain or --set classifier\.NAME\.templates=Templates2:plain\)"):
        shared.template_sets().get("plain")  # how a classifier reads context.prompt_templates
    assert shared.template_sets()["Templates2:plain"] == ("{}", "a {}.")


def test_hook_parse_vocabulary():
    class Upper:
        @hookimpl
        def parse_vocabulary(self, classes, stuff, things):
            if not classes.startswith("upper:"):
                return None
            names = [n.strip().upper() for n in classes[6:].split(";")]
            return Vocabulary(tuple(Category(i + 1, n, True) for i, n in enumerate(names)), name="upper")

    reg = registry_with(Upper())
    assert reg.parse_vocabulary("upper:a; b").names == ("A", "B")
    # Declined input falls through to the built-in parser, which runs last.
    assert reg.parse_vocabulary("person, road").names == ("person", "road")
    with pytest.raises(VocabularyError, match="no enabled plugin could parse"):
        registry_with(Upper(), disable=["vocabularies"]).parse_vocabulary("person")
    # Two non-fallback hooks claiming one input are refused, whatever the install order.
    for order in ((Upper(), type("Upper2", (Upper,), {})()), (type("Upper2", (Upper,), {})(), Upper())):
        with pytest.raises(PluginError, match="the class list 'upper:a' is claimed by the parse_vocabulary hooks of plugins 'Upper' and 'Upper2'"):
            registry_with(*order).parse_vocabulary("upper:a")


def test_hook_register_vocabulary_parsers():
    class Yaml:
        @hookimpl
        def register_vocabulary_parsers(self, register):
            register("@yaml:", lambda text, stuff, things: Vocabulary((Category(1, f"from {text}", True),), name="yaml"))

    class At:
        @hookimpl
        def register_vocabulary_parsers(self, register):
            register("@", lambda text, stuff, things: Vocabulary((Category(1, f"at {text}", True),), name="at"))

    reg = registry_with(Yaml(), At())
    assert reg.parse_vocabulary("@yaml: a.yml").names == ("from a.yml",)  # the longest prefix wins
    assert reg.parse_vocabulary("@b.txt").names == ("at b.txt",)
    assert reg.parse_vocabulary("person").names == ("person",)  # no prefix: the built-in parser
    assert [p.components for p in reg.plugins() if p.name == "Yaml"] == [("vocabulary parser: @yaml:",)]

    class Bad:
        @hookimpl
        def register_vocabulary_parsers(self, register):
            register("yaml", lambda text, stuff, things: None)

    with pytest.raises(PluginError, match="prefix 'yaml' must end with a symbol such as ':' or '@'"):
        registry_with(Bad())

    class ReturnsList:
        @hookimpl
        def register_vocabulary_parsers(self, register):
            register("list:", lambda text, stuff, things: ["person"])

    with pytest.raises(PluginError, match=r"vocabulary parser 'list:' from plugin 'ReturnsList' \(registered in code\) failed in parser\('a', stuff, things\): it returned list, not a Vocabulary"):
        registry_with(ReturnsList()).parse_vocabulary("list: a")


def test_hook_image_segmented(shapes_image):
    seen = []

    class Recorder:
        @hookimpl
        def image_segmented(self, source, result, timings):
            seen.append((source, len(result.segments), sorted(timings)))

    reg = registry_with(FakeComponentsPlugin(), Recorder())
    config = Config.from_dict({"pipeline": {"proposal_generator": "tiles", "classifier": "cycling", "fuser": "paint", "exporters": []}})
    pipe = Pipeline(config, registry=reg, device="cpu")
    pipe.segment(np.asarray(shapes_image), "person, car")
    assert seen == [("<array>", 4, ["classify", "features", "fuse", "proposals", "resize", "total"])]
