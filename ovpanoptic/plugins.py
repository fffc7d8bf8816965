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
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pluggy

from . import boundary, hookspecs
from .boundary import Origin, Target
from .components import KINDS, QUALIFIER, ComponentSpec, NameTable, NoConfig, VocabularyParserSpec, VocabularySpec
from .constants import API_ATTRIBUTE, DISABLE_PLUGINS_ENV, ENTRY_POINT_GROUP, PLUGIN_API_VERSION
from .errors import ComponentNotFoundError, PluginError, VocabularyError
from .types import Vocabulary

__all__ = [
    "BUILTIN_PLUGINS",
    "OvpanopticPluginManager",
    "PluginInfo",
    "Registry",
    "check_api_version",
    "disabled_from_env",
    "make_plugin_manager",
    "register_plugin_object",
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
    ("trackers", "ovpanoptic.builtins.trackers"),
    ("refiners", "ovpanoptic.builtins.refiners"),
    ("label-studio", "ovpanoptic.builtins.label_studio"),
    ("cvat", "ovpanoptic.builtins.cvat"),
    ("cityscapes", "ovpanoptic.builtins.cityscapes"),
)

_REGISTER_HOOKS: dict[str, str] = {
    "proposal_generator": "register_proposal_generators",
    "classifier": "register_classifiers",
    "fuser": "register_fusers",
    "exporter": "register_exporters",
    "tracker": "register_trackers",
    "refiner": "register_refiners",
}


@dataclass(frozen=True)
class _PluginSource:
    """Where a plugin comes from, before it is imported."""

    name: str
    distribution: str
    version: str
    load: Callable[[], object]
    builtin: bool

    @property
    def origin(self) -> Origin:
        return Origin(self.name, self.distribution, self.version, self.builtin)

    @property
    def origin_tuple(self) -> tuple[str, str, bool]:
        return self.distribution, self.version, self.builtin


class OvpanopticPluginManager(pluggy.PluginManager):
    """A :class:`pluggy.PluginManager` that remembers which distribution provided each plugin."""

    def __init__(self) -> None:
        super().__init__("ovpanoptic")
        self.add_hookspecs(hookspecs)
        #: plugin name -> (distribution, version, builtin)
        self.origins: dict[str, tuple[str, str, bool]] = {}
        #: plugins skipped by a qualified block (``--disable-plugin DIST:NAME``), not registered at all
        self.skipped: list[Origin] = []

    def origin(self, plugin_name: str) -> tuple[str, str, bool]:
        """``(distribution, version, builtin)`` of a plugin; unknown ones were registered directly."""
        return self.origins.get(plugin_name, ("(registered in code)", "", False))

    def origin_of(self, plugin_name: str) -> Origin:
        """The :class:`~ovpanoptic.boundary.Origin` of a plugin, for messages."""
        return Origin(plugin_name, *self.origin(plugin_name))


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
    """Every ``group`` entry point, sorted by (name, distribution): the load order never depends on
    the order of ``sys.path`` or of the file system."""
    sources: dict[tuple[str, str], _PluginSource] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != group:
                continue
            dist_name = dist.metadata["Name"] or "(unknown distribution)"
            # The same distribution seen twice on sys.path (e.g. an editable and a site copy): first wins.
            sources.setdefault((ep.name, dist_name), _PluginSource(ep.name, dist_name, dist.version or "", ep.load, False))
    return [sources[key] for key in sorted(sources)]


def _parse_api(value: object) -> tuple[int, int] | None:
    text = str(value).strip()
    major, _, minor = text.partition(".")
    if not major.isdigit() or (minor and not minor.isdigit()):
        return None
    return int(major), int(minor or 0)


def check_api_version(plugin: object, origin: Origin) -> None:
    """Check a plugin's declared ``OVPANOPTIC_PLUGIN_API`` against :data:`PLUGIN_API_VERSION`.

    A plugin declares the API it was written for as ``"MAJOR.MINOR"`` (or ``"MAJOR"``). It loads
    when MAJOR equals ours and MINOR is at most ours; a plugin that declares nothing is assumed
    compatible.

    :raises PluginError: the declaration is malformed or names an incompatible API.
    """
    declared = getattr(plugin, API_ATTRIBUTE, None)
    if declared is None:
        return
    ours = _parse_api(PLUGIN_API_VERSION)
    theirs = _parse_api(declared)
    assert ours is not None
    if theirs is None:
        raise PluginError(
            f"{origin.describe()} declares {API_ATTRIBUTE} = {declared!r}, which is not 'MAJOR.MINOR' "
            f"(this ovpanoptic provides plugin API {PLUGIN_API_VERSION}). Fix the plugin, or block it with "
            f"--disable-plugin {origin.plugin}"
        )
    if theirs[0] != ours[0] or theirs[1] > ours[1]:
        newer = theirs > ours
        fix = (
            f"upgrade ovpanoptic (pip install -U ovpanoptic) to one providing plugin API {theirs[0]}.{theirs[1]}"
            if newer
            else f"upgrade the plugin (pip install -U {origin.distribution}) to one written for plugin API {ours[0]}.x"
        )
        raise PluginError(
            f"{origin.describe()} needs plugin API {theirs[0]}.{theirs[1]}, but this ovpanoptic {_version()} provides "
            f"plugin API {PLUGIN_API_VERSION}: {fix}, or block it with --disable-plugin {origin.plugin}"
        )


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "ovpanoptic_spec"))


def _check_unmarked(pm: OvpanopticPluginManager, plugin: object, origin: Origin) -> None:
    """A function named like a hook but not marked ``@hookimpl`` is a start-up error; a plugin
    with no hooks at all is logged as a warning."""
    unmarked = [
        name
        for name in _hook_names()
        if callable(getattr(plugin, name, None)) and not hasattr(getattr(plugin, name), "ovpanoptic_impl")
    ]
    if unmarked:
        raise PluginError(
            f"{origin.describe()} defines {', '.join(f'{n}()' for n in unmarked)} without the @hookimpl marker, so "
            f"ovpanoptic would never call it: decorate it with @ovpanoptic.hookimpl (from ovpanoptic import hookimpl). "
            f"Fix the plugin, or block it with --disable-plugin {origin.plugin}"
        )
    if not pm.get_hookcallers(plugin):
        log.warning("%s implements no ovpanoptic hooks (hooks are: %s)", origin.describe(), ", ".join(_hook_names()))


def register_plugin_object(pm: OvpanopticPluginManager, plugin: object, origin: Origin) -> None:
    """Register one plugin object after the start-up checks every plugin gets.

    The single path for built-ins, entry points, plugins passed in code and the
    :mod:`ovpanoptic.testing` fixtures: the object must be a module or an instance (not a class),
    declare a compatible plugin API, mark its hooks with ``@hookimpl`` and match the hook
    specifications.

    :raises PluginError: naming the plugin and the fix.
    """
    if inspect.isclass(plugin):
        raise PluginError(
            f"{origin.describe()} is the class {plugin.__name__}, not a plugin object: its hooks would be called "
            f"without an instance. Register an instance ({plugin.__name__}()), or point the entry point at a "
            f"module or a module-level instance. Fix the plugin, or block it with --disable-plugin {origin.plugin}"
        )
    check_api_version(plugin, origin)
    if pm.is_registered(plugin):
        raise PluginError(
            f"{origin.describe()} is an object already registered as plugin {pm.get_name(plugin)!r}: two entry points "
            f"name the same object. Keep one entry point, or block one with --disable-plugin {origin.plugin}"
        )
    if pm.get_plugin(origin.plugin) is not None:
        raise PluginError(
            f"two plugins are named {origin.plugin!r}: give one another name, or block one with --disable-plugin {origin.plugin}"
        )
    try:
        pm.register(plugin, name=origin.plugin)
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"{origin.describe()} is invalid: {exc}. Fix it, or skip it with --disable-plugin {origin.plugin}"
        ) from exc
    try:
        wrappers = [c.name for c in pm.get_hookcallers(plugin) or () for i in c.get_hookimpls() if i.plugin is plugin and (i.hookwrapper or i.wrapper)]
        if wrappers:
            raise PluginError(
                f"{origin.describe()} marks {', '.join(sorted(set(wrappers)))} as a hook wrapper; ovpanoptic calls each plugin's "
                "hooks on their own, so wrappers are not supported: use a plain @hookimpl. Fix the plugin, or block it with "
                f"--disable-plugin {origin.plugin}"
            )
        _check_unmarked(pm, plugin, origin)
    except PluginError:
        pm.unregister(plugin)
        raise


def _load_plugin(pm: OvpanopticPluginManager, source: _PluginSource, qualified_blocks: set[str]) -> None:
    """Import one plugin and register it: the single path for built-ins and entry points.

    Blocking is checked before anything else, so a blocked plugin can neither fail to import nor
    clash with another plugin's name.
    """
    if f"{source.distribution}:{source.name}" in qualified_blocks:
        pm.skipped.append(source.origin)
        return
    if pm.is_blocked(source.name):
        pm.origins.setdefault(source.name, (source.distribution, source.version, source.builtin))
        return
    if source.name in pm.origins:
        # A plugin named like one already loaded (typically a built-in added in a later release that
        # an installed plugin already used): not a start-up error, or every upgrade could break
        # installed plugins. The later one is registered under its qualified name DISTRIBUTION:NAME.
        other, _, _ = pm.origins[source.name]
        qualified = f"{source.distribution}{QUALIFIER}{source.name}"
        if other == source.distribution or qualified in pm.origins:
            raise PluginError(
                f"two plugins are named {source.name!r}, both from distribution {source.distribution!r}: "
                f"give one another name, or block both with --disable-plugin {source.name}"
            )
        log.warning(
            "two plugins are named %r: one from distribution %r, one from %r; the second is registered as %r "
            "(--disable-plugin %s blocks it alone, --disable-plugin %s blocks both; rename its entry point to silence this)",
            source.name, other, source.distribution, qualified, qualified, source.name,
        )
        source = replace(source, name=qualified)
    try:
        plugin = source.load()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any import failure of foreign code becomes one clear error
        raise PluginError(
            f"plugin {source.name!r} from distribution {source.distribution!r} "
            f"{source.version} failed to import: {type(exc).__name__}: {exc}. "
            f"Fix or uninstall it (pip uninstall {source.distribution}), or skip it with "
            f"--disable-plugin {source.name} (or {DISABLE_PLUGINS_ENV}={source.name})"
        ) from exc
    register_plugin_object(pm, plugin, source.origin)
    pm.origins[source.name] = (source.distribution, source.version, source.builtin)


def check_hooks(pm: pluggy.PluginManager) -> None:
    """``check_pending()`` with a message naming the plugin, its distribution, the closest real
    hook and ``--disable-plugin``."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise _unknown_hook_error(pm, exc)[1] from exc


def _unknown_hook_error(pm: pluggy.PluginManager, exc: pluggy.PluginValidationError) -> tuple[str, PluginError]:
    """The name of the plugin ``check_pending()`` complained about, and the error to report."""
    plugin_name = pm.get_name(exc.plugin) or repr(exc.plugin)
    unknown = [
        name
        for name in pm.hook.__dict__
        if not name.startswith("_")
        and not getattr(pm.hook, name).has_spec()
        and any(i.plugin is exc.plugin for i in getattr(pm.hook, name).get_hookimpls())
    ]
    known = _hook_names()
    hint = ""
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; hooks are {sorted(known)}"
    origin = pm.origin_of(plugin_name) if isinstance(pm, OvpanopticPluginManager) else Origin(plugin_name)
    return plugin_name, PluginError(
        f"{origin.describe()} implements unknown hook {unknown[0] if unknown else '?'!r}{hint}{'' if hint.endswith('?') else '.'} "
        f"Fix the plugin, or block it with --disable-plugin {plugin_name}"
    )


def make_plugin_manager(
    disable: Iterable[str] = (),
    *,
    entry_points: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
    env: Mapping[str, str] | None = None,
    problems: dict[str, str] | None = None,
) -> OvpanopticPluginManager:
    """Build a plugin manager: built-ins, then entry points, then ``plugins``; then check hooks.

    :param disable: plugin names to block (added to ``OVPANOPTIC_DISABLE_PLUGINS``); ``NAME``
        blocks every plugin of that name, ``DISTRIBUTION:NAME`` only that distribution's.
    :param entry_points: load the ``ovpanoptic`` entry points of installed distributions.
    :param plugins: extra ``(name, plugin object)`` pairs registered after the others.
    :param env: environment to read ``OVPANOPTIC_DISABLE_PLUGINS`` from (default ``os.environ``).
    :param problems: when given (``ovpanoptic plugins``, ``doctor``), a plugin that cannot be loaded
        is left out and its error recorded here under its name, instead of stopping everything.
    :raises PluginError: (without ``problems``) a plugin fails to import, two plugins share a name, a disabled name matches
        no plugin, a plugin implements an unknown hook, leaves a hook unmarked, is a class, or
        needs another plugin API version.
    """
    pm = OvpanopticPluginManager()
    blocked = [*disabled_from_env(env), *disable]
    qualified = {name for name in blocked if ":" in name}
    for name in blocked:
        if ":" not in name:
            pm.set_blocked(name)
    sources = _builtin_sources() + (_entry_point_sources(ENTRY_POINT_GROUP) if entry_points else [])

    def attempt(name: str, origin: tuple[str, str, bool], load: Callable[[], None]) -> None:
        try:
            load()
        except PluginError as exc:
            if problems is None:
                raise
            problems[name] = str(exc)
            pm.origins.setdefault(name, origin)

    for source in sources:
        attempt(source.name, source.origin_tuple, lambda source=source: _load_plugin(pm, source, qualified))
    for name, obj in plugins:
        if pm.is_blocked(name):
            continue
        attempt(name, ("(registered in code)", "", False), lambda name=name, obj=obj: register_plugin_object(pm, obj, Origin(name)))
    known = set(pm.origins) | {name for name, _ in plugins}
    known_qualified = {f"{s.distribution}:{s.name}" for s in sources}
    unknown = [n for n in blocked if n not in known and n not in known_qualified]
    if unknown:
        raise PluginError(
            f"cannot disable {unknown[0]!r}: no plugin has that name. Installed plugins: "
            f"{', '.join(sorted(known)) or '(none)'}"
        )
    while problems is not None:  # leave out each plugin with an unknown hook, recording why
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            name, error = _unknown_hook_error(pm, exc)
            problems[name] = str(error)
            pm.unregister(exc.plugin)
    check_hooks(pm)
    return pm


def _call_impl(impl: Any, **kwargs: Any) -> Any:
    """Call one plugin's hook implementation, so that what it registers is attributed to it."""
    return impl.function(*[kwargs[name] for name in impl.argnames])


def _register_component(name: str, factory: Callable[..., Any], *, config: type = NoConfig, description: str = "") -> None:
    """Prototype of ``register(name, factory, *, config=ConfigDataclass, description="...")`` of the component hooks."""


def _register_vocabulary(name: str, loader: Callable[[], Vocabulary], *, description: str = "") -> None:
    """Prototype of ``register(name, loader, *, description="...")`` of ``register_vocabularies``."""


def _register_templates(name: str, templates: Sequence[str], *, description: str = "") -> None:
    """Prototype of ``register(name, templates, *, description="...")`` of ``register_prompt_templates``."""


def _register_parser(prefix: str, parser: Callable[[str, str, str], Vocabulary], *, description: str = "") -> None:
    """Prototype of ``register(prefix, parser, *, description="...")`` of ``register_vocabulary_parsers``."""


def _bind(origin: Origin, hook: str, proto: Callable[..., None], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind a plugin's ``register(...)`` call to its prototype, or raise a :class:`PluginError` that
    says how the call should look."""
    signature = inspect.signature(proto)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        params = list(signature.parameters)
        hint = ""
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            close = difflib.get_close_matches(unknown[0], params, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        elif len(args) > 2:
            hint = " (pass the options as keywords)"
        usage = (proto.__doc__ or "").split("``")[1] if "``" in (proto.__doc__ or "") else proto.__name__
        raise PluginError(
            f"{origin.describe()} called register() wrongly in its {hook} hook: {exc}{hint}. Call it as {usage}. "
            f"Fix the plugin, or block it with --disable-plugin {origin.plugin}"
        ) from None
    bound.apply_defaults()
    return dict(bound.arguments)


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
    #: why the plugin's registration failed (``Registry(..., strict=False)`` only)
    problem: str = ""


@dataclass
class Registry:
    """Components and vocabularies collected from a plugin manager's ``register_*`` hooks.

    Built once per pipeline; collecting imports no model code. Every hook call is guarded (see
    :mod:`ovpanoptic.boundary`): a plugin whose hook raises, or calls ``register`` wrongly, is a
    :class:`~ovpanoptic.errors.PluginError` naming it. With ``strict=False`` (``ovpanoptic
    plugins``) such a plugin's registrations are dropped and the error is kept in :attr:`problems`.
    Lookups raise :class:`~ovpanoptic.errors.ComponentNotFoundError` with the available names.

    Names resolve by the rule of :class:`~ovpanoptic.components.NameTable`: a component,
    vocabulary or template-set name that two plugins register is a warning at start-up and an
    :class:`~ovpanoptic.errors.AmbiguousNameError` only where it is used; ``PLUGIN:NAME`` picks one.
    """

    pm: OvpanopticPluginManager
    #: kind -> name -> spec (a :class:`NameTable` per kind)
    components: dict[str, NameTable[ComponentSpec]] = field(default_factory=dict)
    vocabularies: NameTable[VocabularySpec] = field(default_factory=lambda: NameTable("vocabulary", "--vocabulary "))
    #: template-set name -> (templates, description, plugin)
    prompt_templates: NameTable[tuple[tuple[str, ...], str, str]] = field(
        default_factory=lambda: NameTable("prompt-template set", "--set classifier.NAME.templates=")
    )
    #: class-list prefix -> the parsers registered for it (more than one is a conflict)
    vocabulary_parsers: dict[str, list[VocabularyParserSpec]] = field(default_factory=dict)
    strict: bool = True
    #: plugin name -> why its registration failed (``strict=False`` only)
    problems: dict[str, str] = field(default_factory=dict)
    _loaded_vocabularies: dict[str, Vocabulary] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for kind, hook_name in _REGISTER_HOOKS.items():
            how = {"exporter": "--format ", "refiner": "--set pipeline.refiners="}.get(kind, f"--set pipeline.{kind}=")
            self.components[kind] = NameTable(KINDS[kind], how)
            self._collect(hook_name, lambda origin, hook, kind=kind: self._component_register(kind, origin, hook))
        self._collect("register_vocabularies", self._vocabulary_register)
        self._collect("register_prompt_templates", self._templates_register)
        self._collect("register_vocabulary_parsers", self._parser_register)
        for table in (*self.components.values(), self.vocabularies, self.prompt_templates):
            for name in table.ambiguous():
                log.warning("%s (only a use of the name alone is refused; the rest works)", table.ambiguity(name))
        for prefix, specs in sorted(self.vocabulary_parsers.items()):
            if len(specs) > 1:
                log.warning(
                    "class lists starting with %r are claimed by plugins %s: such lists are refused until all but "
                    "one are blocked (--disable-plugin NAME)",
                    prefix,
                    " and ".join(repr(s.plugin) for s in specs),
                )

    def _collect(self, hook_name: str, make_register: Callable[[Origin, str], Callable[..., None]]) -> None:
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name in self.problems:
                continue
            origin = self.pm.origin_of(impl.plugin_name)
            register = make_register(origin, hook_name)
            try:
                boundary.call(
                    Target.hook(hook_name, origin), f"{hook_name}(register)", _call_impl, impl, register=register, user_errors=(PluginError,)
                )
            except PluginError as exc:
                if self.strict:
                    raise
                self.problems[impl.plugin_name] = str(exc)
                self._drop(impl.plugin_name)

    def _drop(self, plugin: str) -> None:
        for table in (*self.components.values(), self.vocabularies, self.prompt_templates):
            table.drop_plugin(plugin)
        for prefix in list(self.vocabulary_parsers):
            self.vocabulary_parsers[prefix] = [s for s in self.vocabulary_parsers[prefix] if s.plugin != plugin]
            if not self.vocabulary_parsers[prefix]:
                del self.vocabulary_parsers[prefix]

    @classmethod
    def create(cls, disable: Iterable[str] = (), *, strict: bool = True, **kwargs: Any) -> Registry:
        """``Registry(make_plugin_manager(disable, **kwargs), strict=strict)``; with ``strict=False``
        a plugin that cannot even be loaded is left out too, its error in :attr:`problems`."""
        if strict:
            return cls(make_plugin_manager(disable, **kwargs), strict=True)
        load_problems: dict[str, str] = {}
        registry = cls(make_plugin_manager(disable, problems=load_problems, **kwargs), strict=False)
        registry.problems = {**load_problems, **registry.problems}
        return registry

    def blocked_components(self) -> dict[str, frozenset[str]]:
        """``{kind: names}`` of the components the blocked plugins (``--disable-plugin``) would
        register: a config table for one of them is kept unchecked (see
        :func:`~ovpanoptic.config.check_component_tables`). A blocked built-in's names are read from
        its registration hooks (which import no model code); a blocked third-party plugin is never
        imported, so its names are unknown and its tables are not excused.
        """
        import importlib

        blocked = {n for n, p in self.pm.list_name_plugin() if p is None and n is not None}
        blocked |= {o.plugin for o in self.pm.skipped}
        names: dict[str, set[str]] = {kind: set() for kind in _REGISTER_HOOKS}
        for plugin, module_name in BUILTIN_PLUGINS:
            if plugin not in blocked and not self.pm.is_blocked(plugin):
                continue
            try:
                module = importlib.import_module(module_name)
            except Exception:  # noqa: BLE001 - a blocked plugin may be broken; it excuses nothing then
                log.debug("cannot import blocked built-in %s", module_name, exc_info=True)
                continue
            for kind, hook_name in _REGISTER_HOOKS.items():
                hook = getattr(module, hook_name, None)
                if not callable(hook):
                    continue

                def register(*args: Any, _kind: str = kind, **kwargs: Any) -> None:
                    name = kwargs.get("name", args[0] if args else None)
                    if isinstance(name, str):
                        names[_kind].add(name)
                        names[_kind].add(f"{plugin}:{name}")

                try:
                    hook(register=register)
                except Exception:  # noqa: BLE001 - as above
                    log.debug("cannot read the components of blocked built-in %s", module_name, exc_info=True)
        return {kind: frozenset(v) for kind, v in names.items()}

    def template_sets(self) -> NameTable[tuple[str, ...]]:
        """Template-set name -> templates, for :attr:`ComponentContext.prompt_templates
        <ovpanoptic.components.ComponentContext.prompt_templates>`: a set several plugins register
        raises :class:`~ovpanoptic.errors.AmbiguousNameError` (a ``ConfigError``) where a component
        reads it, and ``PLUGIN:NAME`` picks one."""
        return self.prompt_templates.mapped(lambda entry: entry[0])

    def origin(self, plugin: str) -> Origin:
        """Where a plugin comes from (for messages)."""
        return self.pm.origin_of(plugin)

    def target(self, spec: ComponentSpec) -> Target:
        """The :class:`~ovpanoptic.boundary.Target` of a registered component."""
        return Target.component(spec, self.origin(spec.plugin))

    @staticmethod
    def _clash(what: str, plugin: str) -> PluginError:
        """One plugin registering a name twice is its own bug (two plugins sharing a name is not:
        see :class:`~ovpanoptic.components.NameTable`)."""
        return PluginError(
            f"plugin {plugin!r} registers {what} twice: give each registration its own name. Fix the plugin, or "
            f"block it with --disable-plugin {plugin}"
        )

    def _component_register(self, kind: str, origin: Origin, hook: str) -> Callable[..., None]:
        def register(*args: Any, **kwargs: Any) -> None:
            a = _bind(origin, hook, _register_component, args, kwargs)
            try:
                spec = ComponentSpec(kind, a["name"], a["factory"], a["config"], a["description"], origin.plugin)
            except ValueError as exc:
                raise PluginError(
                    f"{origin.describe()} registered an invalid {KINDS[kind]} in its {hook} hook: {exc}. "
                    f"Fix the plugin, or block it with --disable-plugin {origin.plugin}"
                ) from None
            if origin.plugin in self.components[kind].claimants(spec.name):
                raise self._clash(f"{KINDS[kind]} {spec.name!r}", origin.plugin)
            self.components[kind].add(spec.name, origin.plugin, spec, origin.describe())

        return register

    def _vocabulary_register(self, origin: Origin, hook: str) -> Callable[..., None]:
        def register(*args: Any, **kwargs: Any) -> None:
            a = _bind(origin, hook, _register_vocabulary, args, kwargs)
            name, loader = a["name"], a["loader"]
            if not isinstance(name, str) or not name.strip():
                raise PluginError(f"{origin.describe()}: a vocabulary name must be a non-empty string, got {name!r}")
            if origin.plugin in self.vocabularies.claimants(name):
                raise self._clash(f"vocabulary {name!r}", origin.plugin)
            if not callable(loader) or isinstance(loader, Vocabulary):
                raise PluginError(
                    f"{origin.describe()}: the loader of vocabulary {name!r} is a {type(loader).__name__}, not a function: "
                    "pass a function that returns the Vocabulary (e.g. lambda: vocabulary)"
                )
            self.vocabularies.add(name, origin.plugin, VocabularySpec(name, loader, str(a["description"]), origin.plugin), origin.describe())

        return register

    def _templates_register(self, origin: Origin, hook: str) -> Callable[..., None]:
        def register(*args: Any, **kwargs: Any) -> None:
            a = _bind(origin, hook, _register_templates, args, kwargs)
            name, templates = a["name"], a["templates"]
            if origin.plugin in self.prompt_templates.claimants(name):
                raise self._clash(f"prompt-template set {name!r}", origin.plugin)
            items = tuple(templates) if isinstance(templates, Iterable) and not isinstance(templates, str) else ()
            bad = [t for t in items if not isinstance(t, str) or t.count("{}") != 1]
            if not items or bad:
                raise PluginError(
                    f"plugin {origin.plugin!r}: prompt templates {name!r} must be a non-empty list of strings with "
                    f"exactly one '{{}}' each (bad: {bad[:2]!r})"
                )
            self.prompt_templates.add(name, origin.plugin, (items, str(a["description"]), origin.plugin), origin.describe())

        return register

    def _parser_register(self, origin: Origin, hook: str) -> Callable[..., None]:
        def register(*args: Any, **kwargs: Any) -> None:
            a = _bind(origin, hook, _register_parser, args, kwargs)
            try:
                spec = VocabularyParserSpec(a["prefix"], a["parser"], str(a["description"]), origin.plugin)
            except ValueError as exc:
                raise PluginError(f"{origin.describe()} registered an invalid vocabulary parser: {exc}") from None
            specs = self.vocabulary_parsers.setdefault(spec.prefix, [])
            if any(s.plugin == origin.plugin for s in specs):
                raise self._clash(f"vocabulary parser {spec.prefix!r}", origin.plugin)
            specs.append(spec)

        return register

    def component(self, kind: str, name: str, option: str | None = None) -> ComponentSpec:
        """The component of ``kind`` registered as ``name`` (or ``PLUGIN:NAME``).

        :param option: how the user of the command in use chooses another (``--refine NAME``);
            default: the config setting (``--set pipeline.KIND=NAME``).

        :raises ComponentNotFoundError: nothing has that name (the message lists the available ones).
        :raises AmbiguousNameError: several plugins registered ``name``: the message names them and
            the qualified names that pick one.
        """
        try:
            return self.components[kind][name]
        except KeyError:
            pass
        available = sorted(self.components.get(kind, {}))
        close = difflib.get_close_matches(name, available, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        how = option or {"exporter": "--format NAME", "refiner": "--set pipeline.refiners=NAME"}.get(kind, f"--set pipeline.{kind}=NAME")
        raise ComponentNotFoundError(
            f"{KINDS.get(kind, kind)} {name!r} is not provided by any installed, enabled plugin.{hint} "
            f"Available: {', '.join(available) or '(none)'}. Install the plugin that provides it, or "
            f"choose another with {how}"
        )

    def vocabulary(self, name: str) -> Vocabulary:
        """Load (once per registry) the named vocabulary.

        :raises VocabularyError: no vocabulary has that name (the message lists the available ones).
        :raises AmbiguousNameError: several plugins registered ``name`` (``PLUGIN:NAME`` picks one).
        :raises ComponentError: the plugin's loader raised or returned something else.
        :raises WeightsError, MissingDependencyError: the loader needs a file or a package that is
            missing (the user's to fix; they pass unchanged).
        """
        if not isinstance(name, str):
            raise VocabularyError(f"a vocabulary name must be a string, got {type(name).__name__}")
        if name not in self.vocabularies:
            available = sorted(self.vocabularies)
            close = difflib.get_close_matches(name, available, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise VocabularyError(
                f"no vocabulary named {name!r}.{hint} Available: {', '.join(available) or '(none)'}"
            )
        if name not in self._loaded_vocabularies:
            spec = self.vocabularies[name]
            origin = self.origin(spec.plugin)
            target = Target(f"vocabulary {name!r}", origin, f"use another vocabulary, or block the plugin with --disable-plugin {origin.plugin}")
            # The user only chose a name: any error is the plugin's, except a missing file or package.
            loaded = boundary.call(target, "its loader()", spec.loader, user_errors=boundary.ENVIRONMENT_ERRORS)
            vocab = boundary.check_vocabulary(target, loaded, "its loader()")
            self._loaded_vocabularies[name] = vocab
        return self._loaded_vocabularies[name]

    def parse_vocabulary(self, classes: str = "", stuff: str = "", things: str = "") -> Vocabulary:
        """Turn typed names into a vocabulary, by the documented precedence rule.

        1. A class list starting with a prefix registered through ``register_vocabulary_parsers``
           goes to that parser (the longest matching prefix wins; a prefix registered by two
           plugins is refused, naming both).
        2. Otherwise every ``parse_vocabulary`` implementation not marked ``trylast`` is asked; one
           may claim the input (two claims are refused, naming both plugins).
        3. Otherwise the ``trylast`` implementations (the built-in comma/``|`` parser) are asked in
           turn.

        :raises VocabularyError: the input is invalid, or nothing can parse it.
        :raises PluginError: two plugins claim the input, or a parser broke its contract.
        """
        for what, value in (("classes", classes), ("stuff", stuff), ("things", things)):
            if not isinstance(value, str):
                raise VocabularyError(f"{what} must be a string of comma-separated names, got {type(value).__name__}")
        text = classes.strip()
        matches = [prefix for prefix in self.vocabulary_parsers if text.startswith(prefix)]
        if matches:
            prefix = max(matches, key=len)
            specs = self.vocabulary_parsers[prefix]
            if len(specs) > 1:
                names = " and ".join(repr(s.plugin) for s in specs)
                raise PluginError(
                    f"class lists starting with {prefix!r} are claimed by plugins {names}: block all but one "
                    f"(--disable-plugin {specs[-1].plugin})"
                )
            spec = specs[0]
            origin = self.origin(spec.plugin)
            target = Target(f"vocabulary parser {prefix!r}", origin, f"block the plugin with --disable-plugin {origin.plugin}")
            call_name = f"parser({text[len(prefix):].strip()[:40]!r}, stuff, things)"
            result = boundary.call(
                target, call_name, spec.parser, text[len(prefix) :].strip(), stuff, things, user_errors=boundary.VOCABULARY_ERRORS
            )
            return boundary.check_vocabulary(target, result, call_name)
        impls = self.pm.hook.parse_vocabulary.get_hookimpls()
        main = sorted((i for i in impls if not i.trylast), key=lambda i: i.plugin_name)
        # Fallbacks: third-party ones by plugin name, then the built-in ones.
        fallback = sorted((i for i in impls if i.trylast), key=lambda i: (self.pm.origin(i.plugin_name)[2], i.plugin_name))
        claims: list[tuple[str, Vocabulary]] = []
        for impl in main:
            vocab = self._ask_parser(impl, classes, stuff, things)
            if vocab is not None:
                claims.append((impl.plugin_name, vocab))
        if len(claims) > 1:
            names = " and ".join(repr(n) for n, _ in claims)
            raise PluginError(
                f"the class list {text[:40]!r} is claimed by the parse_vocabulary hooks of plugins {names}; a parser must "
                f"return None for input that is not its own. Block all but one (--disable-plugin {claims[-1][0]})"
            )
        if claims:
            return claims[0][1]
        for impl in fallback:
            vocab = self._ask_parser(impl, classes, stuff, things)
            if vocab is not None:
                return vocab
        raise VocabularyError(
            "no enabled plugin could parse the class list (is the built-in 'vocabularies' plugin disabled?)"
        )

    def _ask_parser(self, impl: Any, classes: str, stuff: str, things: str) -> Vocabulary | None:
        target = Target.hook("parse_vocabulary", self.origin(impl.plugin_name))
        result = boundary.call(
            target, "parse_vocabulary()", _call_impl, impl, classes=classes, stuff=stuff, things=things, user_errors=boundary.VOCABULARY_ERRORS
        )
        return None if result is None else boundary.check_vocabulary(target, result, "parse_vocabulary()")

    def image_segmented(self, source: str, result: Any, timings: Mapping[str, float]) -> None:
        """Tell every ``image_segmented`` observer; an observer that raises is logged as a warning
        (naming the plugin) and the others still run: observers never stop a run."""
        for impl in self.pm.hook.image_segmented.get_hookimpls():
            try:
                _call_impl(impl, source=source, result=result, timings=timings)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - observers are best effort by contract
                log.warning(
                    "image_segmented observer of %s raised %s: %s (ignored; the run goes on)",
                    self.origin(impl.plugin_name).describe(),
                    type(exc).__name__,
                    exc,
                )

    def plugins(self) -> list[PluginInfo]:
        """One :class:`PluginInfo` per plugin, registered or blocked, sorted by name."""
        provided: dict[str, list[str]] = {}
        labelled: list[tuple[str, NameTable[Any]]] = [(KINDS[kind], table) for kind, table in self.components.items()]
        for label, table in [*labelled, ("vocabulary", self.vocabularies), ("prompt templates", self.prompt_templates)]:
            shared = table.ambiguous()
            for name, owner, _ in table.entries():
                note = ""
                if name in shared:  # listed under each plugin, with the qualified name that picks it
                    others = ", ".join(repr(p) for p in shared[name] if p != owner)
                    note = f" (also registered by {others}: choose this one as {owner}:{name})"
                provided.setdefault(owner, []).append(f"{label}: {name}{note}")
        for prefix, pspecs in self.vocabulary_parsers.items():
            for pspec in pspecs:
                provided.setdefault(pspec.plugin, []).append(f"vocabulary parser: {prefix}")
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
                    problem=self.problems.get(name, ""),
                )
            )
        for origin in self.pm.skipped:
            infos.append(PluginInfo(origin.plugin, origin.distribution, origin.version, origin.builtin, (), (), blocked=True))
        return sorted(infos, key=lambda i: (i.name, i.distribution))
