"""The plugin manager factory and the component registry.

:func:`make_plugin_manager` builds a fresh :class:`pluggy.PluginManager` (there is no global one):
the built-in plugins and every ``ovpanoptic`` entry point of the installed distributions go through
the same :func:`_load_plugin` call, so built-ins can be blocked and listed exactly like third-party
plugins. :class:`Registry` then asks every plugin's ``register_*`` hooks for its components.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import hookspecs
from .components import KINDS, ComponentSpec, NoConfig, VocabularySpec
from .constants import DISABLE_PLUGINS_ENV, ENTRY_POINT_GROUP
from .errors import ComponentNotFoundError, PluginError, VocabularyError
from .types import Vocabulary

__all__ = [
    "BUILTIN_PLUGINS",
    "OvpanopticPluginManager",
    "PluginInfo",
    "Registry",
    "disabled_from_env",
    "make_plugin_manager",
]

log = logging.getLogger(__name__)

#: Built-in plugins: (plugin name, module). They are loaded like entry points of the
#: ``ovpanoptic`` distribution and can be blocked by these names.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("vocabularies", "ovpanoptic.builtins.vocabularies"),
    ("fusion", "ovpanoptic.builtins.fusion"),
    ("exporters", "ovpanoptic.builtins.exporters"),
    ("oracle", "ovpanoptic.builtins.oracle"),
    ("sam2", "ovpanoptic.builtins.sam2"),
    ("clip", "ovpanoptic.builtins.clip"),
)

_REGISTER_HOOKS: dict[str, str] = {
    "proposal_generator": "register_proposal_generators",
    "classifier": "register_classifiers",
    "fuser": "register_fusers",
    "exporter": "register_exporters",
}


@dataclass(frozen=True)
class _PluginSource:
    """Where a plugin comes from, before it is imported."""

    name: str
    distribution: str
    version: str
    load: Callable[[], object]
    builtin: bool


class OvpanopticPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that remembers which distribution provided each plugin."""

    def __init__(self) -> None:
        super().__init__("ovpanoptic")
        self.add_hookspecs(hookspecs)
        #: plugin name -> (distribution, version, builtin)
        self.origins: dict[str, tuple[str, str, bool]] = {}

    def origin(self, plugin_name: str) -> tuple[str, str, bool]:
        """``(distribution, version, builtin)`` of a plugin; unknown ones were registered directly."""
        return self.origins.get(plugin_name, ("(registered in code)", "", False))


def disabled_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Plugin names listed in ``OVPANOPTIC_DISABLE_PLUGINS`` (comma-separated)."""
    raw = (os.environ if env is None else env).get(DISABLE_PLUGINS_ENV, "")
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def _version() -> str:
    try:
        return importlib.metadata.version("ovpanoptic")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _builtin_sources() -> list[_PluginSource]:
    version = _version()
    return [
        _PluginSource(name, "ovpanoptic", version, lambda module=module: importlib.import_module(module), True)
        for name, module in BUILTIN_PLUGINS
    ]


def _entry_point_sources(group: str) -> list[_PluginSource]:
    sources: list[_PluginSource] = []
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != group:
                continue
            dist_name = dist.metadata["Name"] or "(unknown distribution)"
            sources.append(_PluginSource(ep.name, dist_name, dist.version or "", ep.load, False))
    return sources


def _load_plugin(pm: OvpanopticPluginManager, source: _PluginSource) -> None:
    """Import one plugin and register it: the single path for built-ins and entry points."""
    if source.name in pm.origins:
        other, _, _ = pm.origins[source.name]
        raise PluginError(
            f"two plugins are named {source.name!r}: one from distribution {other!r}, one from "
            f"{source.distribution!r}. Uninstall one, or block both with --disable-plugin {source.name}"
        )
    if pm.is_blocked(source.name):
        pm.origins[source.name] = (source.distribution, source.version, source.builtin)
        return
    try:
        plugin = source.load()
    except Exception as exc:  # noqa: BLE001 - any import failure of foreign code becomes one clear error
        raise PluginError(
            f"plugin {source.name!r} from distribution {source.distribution!r} "
            f"{source.version} failed to import: {type(exc).__name__}: {exc}. "
            f"Fix or uninstall it (pip uninstall {source.distribution}), or skip it with "
            f"--disable-plugin {source.name} (or {DISABLE_PLUGINS_ENV}={source.name})"
        ) from exc
    try:
        pm.register(plugin, name=source.name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {source.name!r} from distribution {source.distribution!r} is invalid: {exc}. "
            f"Fix it, or skip it with --disable-plugin {source.name}"
        ) from exc
    pm.origins[source.name] = (source.distribution, source.version, source.builtin)


def check_hooks(pm: pluggy.PluginManager) -> None:
    """``check_pending()`` with a message naming the plugin and the closest real hook."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        plugin_name = pm.get_name(exc.plugin) or repr(exc.plugin)
        unknown = [
            name
            for name in pm.hook.__dict__
            if not name.startswith("_")
            and not getattr(pm.hook, name).has_spec()
            and any(i.plugin is exc.plugin for i in getattr(pm.hook, name).get_hookimpls())
        ]
        known = [n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "ovpanoptic_spec")]
        hint = ""
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; hooks are {sorted(known)}"
        raise PluginError(
            f"plugin {plugin_name!r} implements unknown hook {unknown[0] if unknown else '?'!r}{hint}"
        ) from exc


def make_plugin_manager(
    disable: Iterable[str] = (),
    *,
    entry_points: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
    env: Mapping[str, str] | None = None,
) -> OvpanopticPluginManager:
    """Build a plugin manager: built-ins, then entry points, then ``plugins``; then check hooks.

    :param disable: plugin names to block (added to ``OVPANOPTIC_DISABLE_PLUGINS``).
    :param entry_points: load the ``ovpanoptic`` entry points of installed distributions.
    :param plugins: extra ``(name, plugin object)`` pairs registered after the others.
    :param env: environment to read ``OVPANOPTIC_DISABLE_PLUGINS`` from (default ``os.environ``).
    :raises PluginError: a plugin fails to import, two plugins share a name, a disabled name matches
        no plugin, or a plugin implements an unknown hook.
    """
    pm = OvpanopticPluginManager()
    blocked = [*disabled_from_env(env), *disable]
    for name in blocked:
        pm.set_blocked(name)
    sources = _builtin_sources() + (_entry_point_sources(ENTRY_POINT_GROUP) if entry_points else [])
    for source in sources:
        _load_plugin(pm, source)
    for name, obj in plugins:
        if pm.is_blocked(name):
            continue
        pm.register(obj, name=name)
    known = set(pm.origins) | {name for name, _ in plugins}
    unknown = [n for n in blocked if n not in known]
    if unknown:
        raise PluginError(
            f"cannot disable {unknown[0]!r}: no plugin has that name. Installed plugins: "
            f"{', '.join(sorted(known)) or '(none)'}"
        )
    check_hooks(pm)
    return pm


def _call_impl(impl: Any, **kwargs: Any) -> None:
    """Call one plugin's hook implementation, so that what it registers is attributed to it."""
    impl.function(*[kwargs[name] for name in impl.argnames])


@dataclass(frozen=True)
class PluginInfo:
    """What ``ovpanoptic plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    builtin: bool
    hooks: tuple[str, ...]
    components: tuple[str, ...]
    blocked: bool = False


@dataclass
class Registry:
    """Components and vocabularies collected from a plugin manager's ``register_*`` hooks.

    Built once per pipeline; collecting imports no model code. Lookups raise
    :class:`~ovpanoptic.errors.ComponentNotFoundError` with the available names.
    """

    pm: OvpanopticPluginManager
    components: dict[str, dict[str, ComponentSpec]] = field(default_factory=dict)
    vocabularies: dict[str, VocabularySpec] = field(default_factory=dict)
    #: template-set name -> (templates, description, plugin)
    prompt_templates: dict[str, tuple[tuple[str, ...], str, str]] = field(default_factory=dict)
    _loaded_vocabularies: dict[str, Vocabulary] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for kind, hook_name in _REGISTER_HOOKS.items():
            self.components[kind] = {}
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                _call_impl(impl, register=self._component_register(kind, impl.plugin_name))
        for impl in self.pm.hook.register_vocabularies.get_hookimpls():
            _call_impl(impl, register=self._vocabulary_register(impl.plugin_name))
        for impl in self.pm.hook.register_prompt_templates.get_hookimpls():
            _call_impl(impl, register=self._templates_register(impl.plugin_name))

    @classmethod
    def create(cls, disable: Iterable[str] = (), **kwargs: Any) -> Registry:
        """Shortcut for ``Registry(make_plugin_manager(disable, **kwargs))``."""
        return cls(make_plugin_manager(disable, **kwargs))

    def _component_register(self, kind: str, plugin_name: str) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any], *, config: type = NoConfig, description: str = "") -> None:
            try:
                spec = ComponentSpec(kind, name, factory, config, description, plugin_name)
            except ValueError as exc:
                raise PluginError(f"plugin {plugin_name!r}: {exc}") from None
            existing = self.components[kind].get(name)
            if existing is not None:
                raise PluginError(
                    f"{KINDS[kind]} {name!r} is registered by two plugins: {existing.plugin!r} and "
                    f"{plugin_name!r}. Disable one with --disable-plugin NAME"
                )
            self.components[kind][name] = spec

        return register

    def _vocabulary_register(self, plugin_name: str) -> Callable[..., None]:
        def register(name: str, loader: Callable[[], Vocabulary], *, description: str = "") -> None:
            existing = self.vocabularies.get(name)
            if existing is not None:
                raise PluginError(
                    f"vocabulary {name!r} is registered by two plugins: {existing.plugin!r} and "
                    f"{plugin_name!r}. Disable one with --disable-plugin NAME"
                )
            if not callable(loader):
                raise PluginError(f"plugin {plugin_name!r}: loader of vocabulary {name!r} is not callable")
            self.vocabularies[name] = VocabularySpec(name, loader, description, plugin_name)

        return register

    def _templates_register(self, plugin_name: str) -> Callable[..., None]:
        def register(name: str, templates: Sequence[str], *, description: str = "") -> None:
            if name in self.prompt_templates:
                raise PluginError(
                    f"prompt templates {name!r} are registered by two plugins: "
                    f"{self.prompt_templates[name][2]!r} and {plugin_name!r}. Disable one with --disable-plugin NAME"
                )
            items = tuple(templates) if not isinstance(templates, str) else ()
            bad = [t for t in items if not isinstance(t, str) or t.count("{}") != 1]
            if not items or bad:
                raise PluginError(
                    f"plugin {plugin_name!r}: prompt templates {name!r} must be a non-empty list of strings with "
                    f"exactly one '{{}}' each (bad: {bad[:2]!r})"
                )
            self.prompt_templates[name] = (items, description, plugin_name)

        return register

    def component(self, kind: str, name: str) -> ComponentSpec:
        """The component of ``kind`` registered as ``name``."""
        try:
            return self.components[kind][name]
        except KeyError:
            pass
        available = sorted(self.components.get(kind, {}))
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ComponentNotFoundError(
            f"{KINDS.get(kind, kind)} {name!r} is not provided by any installed, enabled plugin.{hint} "
            f"Available: {', '.join(available) or '(none)'}. Install the plugin that provides it, or "
            f"choose another with --set pipeline.{kind}=NAME"
        )

    def vocabulary(self, name: str) -> Vocabulary:
        """Load (once per registry) the named vocabulary."""
        if name not in self.vocabularies:
            available = sorted(self.vocabularies)
            close = difflib.get_close_matches(name, available, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise VocabularyError(
                f"no vocabulary named {name!r}.{hint} Available: {', '.join(available) or '(none)'}"
            )
        if name not in self._loaded_vocabularies:
            vocab = self.vocabularies[name].loader()
            if not isinstance(vocab, Vocabulary):
                raise PluginError(
                    f"vocabulary {name!r} from plugin {self.vocabularies[name].plugin!r} did not load a Vocabulary"
                )
            self._loaded_vocabularies[name] = vocab
        return self._loaded_vocabularies[name]

    def parse_vocabulary(self, classes: str = "", stuff: str = "", things: str = "") -> Vocabulary:
        """Ask the ``parse_vocabulary`` hooks to turn typed names into a vocabulary."""
        result = self.pm.hook.parse_vocabulary(classes=classes, stuff=stuff, things=things)
        if result is None:
            raise VocabularyError(
                "no enabled plugin could parse the class list (is the built-in 'vocabularies' plugin disabled?)"
            )
        if not isinstance(result, Vocabulary):
            raise PluginError(f"a parse_vocabulary hook returned {type(result).__name__}, not a Vocabulary")
        return result

    def plugins(self) -> list[PluginInfo]:
        """One :class:`PluginInfo` per plugin, registered or blocked, sorted by name."""
        provided: dict[str, list[str]] = {}
        for kind, specs in self.components.items():
            for spec in specs.values():
                provided.setdefault(spec.plugin, []).append(f"{KINDS[kind]}: {spec.name}")
        for spec in self.vocabularies.values():
            provided.setdefault(spec.plugin, []).append(f"vocabulary: {spec.name}")
        for name, (_, _, plugin) in self.prompt_templates.items():
            provided.setdefault(plugin, []).append(f"prompt templates: {name}")
        infos = []
        names = set(self.pm.origins) | {n for n, _ in self.pm.list_name_plugin() if n is not None}
        for name in sorted(names):
            plugin = self.pm.get_plugin(name)
            dist, version, builtin = self.pm.origin(name)
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()) if plugin is not None else []
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist,
                    version=version,
                    builtin=builtin,
                    hooks=tuple(hooks),
                    components=tuple(sorted(provided.get(name, []))),
                    blocked=self.pm.is_blocked(name),
                )
            )
        return infos
