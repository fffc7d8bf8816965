"""Presets, config files and ``--set`` overrides.

A config is a small TOML file::

    [pipeline]                      # which components, and pipeline-wide options
    proposal_generator = "sam2"
    classifier = "clip"
    fuser = "detectron2"

    [proposal_generator.sam2]       # one table per component: overrides of its config dataclass
    points_per_side = 16

Defaults live in :class:`PipelineSettings` and in each component's config dataclass; files only
override them. Unknown keys are errors that suggest the closest valid key.

Device profiles (``configs/devices/NAME.toml``) hold the speed settings that suit a kind of device
(grid size, adaptive sampling, bfloat16). With ``pipeline.device_profile = "auto"`` the profile of
the device ``pipeline.device`` resolves to is chosen (:attr:`ovpanoptic.device.DeviceInfo.profile`).
A component's options are layered: its dataclass defaults, then the profile, then the preset or
file, then ``--set``: anything a preset or ``--set`` states wins over the profile. A profile's
``[pipeline]`` may set ``pipeline.tracker`` and ``pipeline.batch_size`` only (the CUDA profiles choose
``sam2-video`` and batches of 8 and 4), under the same rule: a value the preset, file, ``--set`` or
``--tracker`` states wins.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import sys
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .components import KINDS, QUALIFIER, ComponentSpec
from .constants import CONFIG_PATH_ENV, DEFAULT_MAX_PIXELS, DEFAULT_PRESET, MAX_BATCH_SIZE
from .errors import AmbiguousNameError, ComponentNotFoundError, ConfigError
from .threads import THREADS_AUTO, check_threads_setting

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Config",
    "DeviceProfile",
    "check_component_tables",
    "PROFILE_PIPELINE_KEYS",
    "PipelineSettings",
    "build_dataclass",
    "describe_fields",
    "field_types",
    "list_device_profiles",
    "list_presets",
    "load_config",
    "load_device_profile",
    "parse_override",
    "preset_dirs",
]

log = logging.getLogger(__name__)


#: What ``pipeline.batch_size`` takes, in words (its type errors end with it).
_BATCH_SIZE_TAKES = f"images per encoder pass, 1 to {MAX_BATCH_SIZE}, e.g. 8 on a large GPU"


@dataclass(frozen=True)
class PipelineSettings:
    """The ``[pipeline]`` section.

    :param proposal_generator: name of the proposal generator component.
    :param classifier: name of the classifier component.
    :param fuser: name of the fuser component.
    :param exporters: exporters used when the CLI gets no ``--format``.
    :param tracker: name of the video tracker (``segment-video``): ``flow`` (DIS optical flow, no
        model; the default: on a CPU it costs the same for 2 or 18 objects), ``sam2-video`` (SAM 2's
        video predictor: better masks where a GPU makes its per-object cost small), ``hold``.
    :param refiners: refiners applied, in this order, to every result before export (default none;
        ``["cleanup"]`` is the built-in mask clean-up; options in ``[refiner.NAME]``). A string is
        read as comma-separated names (``--set pipeline.refiners=cleanup``).
    :param device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    :param device_profile: speed defaults for the device: ``"auto"`` (the profile of the resolved
        device: ``cpu``, ``cpu-bf16``, ``cuda``, ``cuda-fp32`` or ``mps``), a profile name, the path
        of a profile TOML, or ``"none"`` (component defaults only).
    :param max_side: images whose longer side exceeds this are downscaled for processing and the
        result is scaled back to the original size; 0 disables downscaling.
    :param min_side: downscaling for ``max_side`` never makes the shorter side smaller than this
        (pixels), so thin images stay usable (SAM 2 needs 32 px per side).
    :param cache_images: how many images' proposals and features are kept for re-querying.
    :param max_pixels: images with more pixels (width x height) are refused, files before they are
        decoded (a small PNG can declare 120 megapixels); 0 = no limit.
    :param threads: CPU threads of torch's operators in batch runs (``segment`` of a folder):
        ``"auto"`` (the default) chooses per image from the machine's load: all of the process's
        threads when the CPU is quiet, fewer or one more than the CPUs when other processes compete
        (see :mod:`ovpanoptic.threads`); a number fixes it. Only CPU devices are affected.
    :param batch_size: images whose image encoders run together, in one forward pass, in batch runs
        (``segment`` of a folder, local and Ray engines), 1 to :data:`~ovpanoptic.constants.MAX_BATCH_SIZE` (64): the proposal
        generator's and the classifier's, where they offer it
        (:class:`~ovpanoptic.components.BatchEncoder`: the built-in ``sam2`` and ``clip`` dense pass).
        Everything after the encoders still runs one image at a time, and the results are those of
        single images. The device profile chooses it unless the config states it: 1 on CPUs (a CPU
        gains nothing from it and holds each image's activations at once), 8 on CUDA GPUs with
        bfloat16, 4 without.
    """

    proposal_generator: str = "sam2"
    classifier: str = "clip"
    fuser: str = "detectron2"
    exporters: tuple[str, ...] = ("coco-panoptic",)
    tracker: str = "flow"
    refiners: tuple[str, ...] | str = ()
    device: str = "auto"
    device_profile: str = "auto"
    max_side: int = 1024
    min_side: int = 32
    cache_images: int = 4
    max_pixels: int = DEFAULT_MAX_PIXELS
    threads: int | str = THREADS_AUTO
    batch_size: int = field(default=1, metadata={"expects": _BATCH_SIZE_TAKES})

    def __post_init__(self) -> None:
        try:
            check_threads_setting(self.threads)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ConfigError(
                f"pipeline.batch_size: expected an integer, got {self.batch_size!r} ({_BATCH_SIZE_TAKES})"
            )
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ConfigError(
                f"pipeline.batch_size must be 1 to {MAX_BATCH_SIZE} images, got {self.batch_size!r} "
                "(1: each image through the encoders alone; 8 suits a large GPU)"
            )
        for kind in ("proposal_generator", "classifier", "fuser", "tracker"):
            if not getattr(self, kind):
                raise ConfigError(f"pipeline.{kind} must name a component")
        refiners = self.refiners
        if isinstance(refiners, str):
            refiners = tuple(n.strip() for n in refiners.split(",") if n.strip())
        if any(not isinstance(n, str) or not n.strip() for n in refiners):
            raise ConfigError(f"pipeline.refiners must be a list of refiner names, e.g. [\"cleanup\"], got {list(refiners)!r}")
        twice = sorted({n for n in refiners if refiners.count(n) > 1})
        if twice:
            raise ConfigError(f"pipeline.refiners names {twice[0]!r} twice: list each refiner once (they run in list order)")
        object.__setattr__(self, "refiners", tuple(refiners))
        if self.max_side < 0:
            raise ConfigError(f"pipeline.max_side must be >= 0 (0 = no downscaling), got {self.max_side}")
        if self.max_side and self.max_side < 32:
            raise ConfigError(f"pipeline.max_side {self.max_side} is too small: use at least 32 (or 0)")
        if self.min_side < 1:
            raise ConfigError(f"pipeline.min_side must be >= 1, got {self.min_side}")
        if self.max_pixels < 0:
            raise ConfigError(f"pipeline.max_pixels must be >= 0 (0 = no limit), got {self.max_pixels}")
        if self.cache_images < 0:
            raise ConfigError(f"pipeline.cache_images must be >= 0, got {self.cache_images}")
        if not isinstance(self.device_profile, str) or not self.device_profile.strip():
            raise ConfigError(
                "pipeline.device_profile must be 'auto', 'none', a profile name (see configs/devices/) or a .toml path"
            )
        device = self.device
        if not (device in ("auto", "cpu", "cuda", "mps") or (device.startswith("cuda:") and device[5:].isdigit())):
            raise ConfigError(f"pipeline.device {device!r} is invalid: use auto, cpu, cuda, cuda:N or mps")


_SECTIONS = ("pipeline", *KINDS)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is not None:  # list[int], Literal['a', 'b'], int | None: show the arguments
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _expected(tp: Any) -> str:
    """What a value of type ``tp`` is, in words, for messages (``int`` -> ``"an integer"``)."""
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false", Path: "a path string"}
    if tp in words:
        return words[tp]
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if origin in (tuple, list, Sequence):
        return "a list"
    return _type_name(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` (from TOML) against a dataclass field type; convert lists to tuples."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        kinds = [_expected(arg) for arg in args if arg is not type(None)]
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {' or '.join(kinds)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}{hint}")
        return value
    if origin in (tuple, list, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is not list else items
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path string, got {value!r}")
        return Path(value)
    return value


def field_types(cls: type) -> dict[str, Any]:
    """The type of each field of the dataclass ``cls``, resolved like :func:`typing.get_type_hints`.

    A config module written with ``from __future__ import annotations`` may annotate a field with
    a name imported only under ``TYPE_CHECKING``; such a field (and only it) is typed ``Any``, so
    its value is passed through unchecked instead of the whole config failing with ``NameError``.
    """
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations of foreign code: resolve field by field
        pass
    module = sys.modules.get(cls.__module__)
    namespace = dict(vars(module)) if module is not None else {}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not isinstance(f.type, str):
            out[f.name] = f.type
            continue
        try:
            out[f.name] = eval(f.type, namespace, dict(vars(typing)))  # noqa: S307 - an annotation, as get_type_hints does
        except Exception:  # noqa: BLE001
            log.debug("config %s.%s: annotation %r cannot be resolved; not type-checked", cls.__name__, f.name, f.type)
            out[f.name] = Any
    return out


def describe_fields(cls: type) -> list[tuple[str, str, Any]]:
    """``(name, type, default)`` of every init field of a config dataclass (for ``ovpanoptic plugins NAME``).

    A field without a default has ``dataclasses.MISSING`` as its default.
    """
    hints = field_types(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            try:
                default = f.default_factory()  # type: ignore[misc]
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin's factory: shown, not fatal
                default = f"(its default_factory raised {type(exc).__name__})"
        else:
            default = dataclasses.MISSING
        hint = hints.get(f.name, Any)
        shown = f"{f.type} (not checked)" if hint is Any and isinstance(f.type, str) and f.type != "Any" else _type_name(hint)
        rows.append((f.name, shown, default))
    return rows


def build_dataclass(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Instantiate the frozen config dataclass ``cls`` from a table, validating keys and types.

    :raises ConfigError: unknown key (with the closest valid key), wrong type, or a value the
        dataclass's own validation rejects.
    """
    hints = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in table.items():
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(sorted(fields)) or "(none: this component takes no options)"
            raise ConfigError(f"unknown key {key!r} in [{where}].{hint} Valid keys: {valid}")
        try:
            kwargs[key] = _coerce(value, hints.get(key, Any), f"{where}.{key}")
        except ConfigError as exc:
            expects = fields[key].metadata.get("expects")  # what the field takes, in words (its range)
            raise ConfigError(f"{exc} ({expects})" if expects else str(exc)) from None
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        section, _, component = where.partition(".")
        example = f"--set {where}.{missing[0]}=VALUE" if component else f"{missing[0]} = VALUE in [{where}]"
        raise ConfigError(f"[{where}] needs a value for {', '.join(repr(m) for m in missing)} (no default): e.g. {example}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid [{where}]: {exc}") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin's own validation failing in another way
        raise ConfigError(
            f"invalid [{where}]: the config class {cls.__name__} raised {type(exc).__name__}: {exc} (its validation should "
            "raise ValueError with a message; this looks like a fault in the plugin that provides it)"
        ) from None


def preset_dirs() -> list[Path]:
    """Directories searched for presets: ``$OVPANOPTIC_CONFIG_PATH`` entries, then the shipped ``configs/``."""
    dirs = [Path(p) for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    dirs += [here / "configs", here.parent / "configs"]
    return [d for d in dirs if d.is_dir()]


def list_presets() -> dict[str, Path]:
    """Preset name -> file, first directory winning."""
    presets: dict[str, Path] = {}
    for d in preset_dirs():
        for f in sorted(d.glob("*.toml")):
            presets.setdefault(f.stem, f)
    return presets


def _find_toml(spec: str, known: Mapping[str, Path], what: str, option: str, also: str = "") -> Path:
    """The file a preset-like ``spec`` names: a known name (without suffix) or a path.

    :raises ConfigError: a folder, a missing file, or an unknown name (with the closest match).
    """
    path = Path(spec)
    if spec in known and not path.suffix:
        return known[spec]
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{option} {spec} is a folder: pass a {what} name or the path of a .toml file")
    if path.suffix or os.sep in spec:
        raise ConfigError(f"{'config' if what == 'preset' else what} file {spec} does not exist")
    close = difflib.get_close_matches(spec, list(known), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"no {what} named {spec!r}.{hint} {what.capitalize()}s: {', '.join(sorted(known)) or '(none)'}; "
        f"or {also}the path of a .toml file"
    )


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parsed TOML of ``path``; :class:`ConfigError` naming ``what`` when unreadable or invalid."""
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def check_component_tables(
    tables: Mapping[str, Mapping[str, Mapping[str, Any]]],
    registered: Mapping[str, Mapping[str, ComponentSpec]],
    source: str,
    label: str = "",
    *,
    blocked: Mapping[str, Collection[str]] | None = None,
) -> None:
    """Validate ``{kind: {component: options}}`` tables (a preset's or a device profile's) against
    the registered components' config dataclasses.

    :param source: where the tables come from, for messages.
    :param label: added after ``kind.component`` in messages about bad options.
    :param blocked: ``{kind: names}`` of the components of plugins blocked with ``--disable-plugin``
        (see :meth:`~ovpanoptic.plugins.Registry.blocked_components`): their tables are kept
        unchecked (a preset configures ``clip`` even when the ``clip`` plugin is blocked).
    :raises ConfigError: bad options, or a table for a component no plugin registers (the message
        names the close match, or lists the registered names); only a blocked plugin's component
        is excused.
    """
    for kind, by_name in tables.items():
        names = registered.get(kind, {})
        for name, table in by_name.items():
            if name in names:
                try:
                    spec = names[name]
                except AmbiguousNameError:  # several plugins' components: checked when one is chosen (PLUGIN:NAME)
                    continue
                build_dataclass(spec.config_class, table, f"{kind}.{name}{label}")
                continue
            close = difflib.get_close_matches(name, list(names), n=1)
            if close:
                raise ConfigError(
                    f"[{kind}.{name}] in {source} configures no installed {KINDS[kind]}. Did you mean [{kind}.{close[0]}]?"
                )
            bare = name.split(QUALIFIER, 1)[-1]
            if blocked is not None and (name in blocked.get(kind, ()) or bare in blocked.get(kind, ())):
                log.info("ignoring [%s.%s] in %s: its plugin is blocked (--disable-plugin)", kind, name, source)
                continue
            known = ", ".join(sorted(names)) or "(none)"
            raise ConfigError(
                f"[{kind}.{name}] in {source} configures no registered {KINDS[kind]}: the registered {KINDS[kind]}s are "
                f"{known}. Fix the name or remove the table (install the plugin that provides {name!r} to keep it; "
                "--disable-plugin excuses only a table for a component of the blocked plugin)"
            )


def list_device_profiles() -> dict[str, Path]:
    """Device profile name -> file: ``devices/*.toml`` in each preset directory, first winning."""
    profiles: dict[str, Path] = {}
    for d in preset_dirs():
        for f in sorted((d / "devices").glob("*.toml")):
            profiles.setdefault(f.stem, f)
    return profiles


#: The ``[pipeline]`` keys a device profile may set (under the preset: a stated value wins).
PROFILE_PIPELINE_KEYS = ("tracker", "batch_size")


@dataclass(frozen=True)
class DeviceProfile:
    """Speed defaults for one kind of device: component tables applied under the preset's.

    :param name: the profile's name (file stem).
    :param source: the file it was read from.
    :param tables: ``{kind: {component: {option: value}}}``, as in a preset.
    :param reason: why this profile was chosen (the device, its bf16 support), for ``-v``.
    :param pipeline: its ``[pipeline]`` settings: only :data:`PROFILE_PIPELINE_KEYS` (``tracker``,
        ``batch_size``), used where the config does not state them.
    """

    name: str
    source: str
    tables: Mapping[str, Mapping[str, Mapping[str, Any]]]
    reason: str = ""
    pipeline: Mapping[str, Any] = field(default_factory=dict)

    def table(self, kind: str, name: str) -> Mapping[str, Any]:
        """The profile's options of one component (empty when it has none)."""
        return self.tables.get(kind, {}).get(name, {})


def load_device_profile(spec: str | Path, reason: str = "") -> DeviceProfile:
    """Read a device profile by name (:func:`list_device_profiles`) or path.

    :raises ConfigError: no such profile, unreadable TOML, a ``[pipeline]`` key other than
        :data:`PROFILE_PIPELINE_KEYS` or an invalid value there, or an unknown section.
    """
    path = _find_toml(str(spec), list_device_profiles(), "device profile", "pipeline.device_profile", "'auto', 'none' or ")
    data = _read_toml(path, "device profile")
    _check_sections(data, str(path))
    pipeline = dict(data.get("pipeline", {}))
    for key in pipeline:
        if key not in PROFILE_PIPELINE_KEYS:
            close = difflib.get_close_matches(key, PROFILE_PIPELINE_KEYS, n=1)
            hint = f"Did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"device profile {path}: [pipeline] key {key!r} cannot be set by a device profile. {hint}"
                f"A profile's [pipeline] may set only {' and '.join(PROFILE_PIPELINE_KEYS)}; put other pipeline settings in a preset"
            )
    try:
        build_dataclass(PipelineSettings, pipeline, f"pipeline (device profile {path})")  # the values' types and checks
    except ConfigError as exc:
        raise ConfigError(str(exc) if str(path) in str(exc) else f"device profile {path}: {exc}") from None
    tables = {kind: {n: dict(t) for n, t in data.get(kind, {}).items()} for kind in KINDS if kind in data}
    return DeviceProfile(name=path.stem, source=str(path), tables=tables, reason=reason, pipeline=pipeline)


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """Split ``"a.b.c=value"``; the value is read as a TOML value, else taken as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r} is not KEY=VALUE, e.g. --set pipeline.max_side=512")
    parts = tuple(p.strip() for p in key.split("."))
    if any(not p for p in parts):
        raise ConfigError(f"--set {text!r}: the key {key!r} has an empty part")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def _check_sections(data: Mapping[str, Any], where: str) -> None:
    for section, table in data.items():
        if section not in _SECTIONS:
            close = difflib.get_close_matches(section, _SECTIONS, n=1)
            hint = f" Did you mean [{close[0]}]?" if close else ""
            raise ConfigError(f"unknown section [{section}] in {where}.{hint} Sections: {', '.join(_SECTIONS)}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{section}] in {where} must be a table")
        if section != "pipeline":
            for name, sub in table.items():
                if not isinstance(sub, Mapping):
                    raise ConfigError(
                        f"{section}.{name} in {where} must be a table [{section}.{name}] of options for "
                        f"the {KINDS[section]} named {name!r}"
                    )


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


@dataclass(frozen=True)
class Config:
    """A loaded config: pipeline settings plus the raw per-component tables.

    Component tables are validated against their config dataclasses by :meth:`component_config`,
    once the registry knows the component.
    """

    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    tables: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    source: str = "(defaults)"
    #: The ``[pipeline]`` keys the preset, file or ``--set`` states (the others are defaults, which
    #: a device profile's ``[pipeline]`` may replace: :data:`PROFILE_PIPELINE_KEYS`).
    stated: frozenset[str] = frozenset()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "(dict)") -> Config:
        """Validate the sections and the ``[pipeline]`` table of parsed TOML."""
        _check_sections(data, source)
        pipeline = build_dataclass(PipelineSettings, data.get("pipeline", {}), "pipeline")
        tables = {kind: {n: dict(t) for n, t in data.get(kind, {}).items()} for kind in KINDS}
        return cls(pipeline=pipeline, tables=tables, source=source, stated=frozenset(data.get("pipeline", {})))

    def to_dict(self) -> dict[str, Any]:
        """The config as a nested dict (pipeline settings expanded, tables as given)."""
        data: dict[str, Any] = {"pipeline": dataclasses.asdict(self.pipeline)}
        for kind, tables in self.tables.items():
            if tables:
                data[kind] = {n: dict(t) for n, t in tables.items()}
        return data

    def with_overrides(self, overrides: Sequence[str]) -> Config:
        """Apply ``--set`` overrides (``pipeline.KEY=V`` or ``KIND.NAME.KEY=V``)."""
        data: dict[str, Any] = {"pipeline": {}}
        raw_pipeline = {k: v for k, v in dataclasses.asdict(self.pipeline).items() if k in self.stated}
        for text in overrides:
            parts, value = parse_override(text)
            if parts[0] == "pipeline":
                if len(parts) != 2:
                    raise ConfigError(f"--set {text!r}: use pipeline.KEY=VALUE")
                data["pipeline"][parts[1]] = value
            elif parts[0] in KINDS:
                if len(parts) != 3:
                    raise ConfigError(f"--set {text!r}: use {parts[0]}.COMPONENT.KEY=VALUE")
                data.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = value
            else:
                close = difflib.get_close_matches(parts[0], _SECTIONS, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"--set {text!r}: unknown section {parts[0]!r}.{hint} Sections: {', '.join(_SECTIONS)}")
        merged = _merge({"pipeline": raw_pipeline, **{k: dict(v) for k, v in self.tables.items()}}, data)
        return Config.from_dict(merged, source=f"{self.source} + --set")

    def component_config(self, spec: ComponentSpec, defaults: Mapping[str, Any] | None = None) -> Any:
        """The validated config dataclass instance for a registered component.

        The table is ``[KIND.NAME]``; a table under the qualified name ``[KIND."PLUGIN:NAME"]``
        (for a name several plugins register) applies to that plugin's component only, over it.

        :param defaults: options applied under this config's table (a device profile's).
        """
        tables = self.tables.get(spec.kind, {})
        table = {**tables.get(spec.name, {}), **tables.get(f"{spec.plugin}{QUALIFIER}{spec.name}", {})}
        if defaults:
            table = {**defaults, **table}
        return build_dataclass(spec.config_class, table, f"{spec.kind}.{spec.name}")

    def explicit(self, kind: str, name: str) -> frozenset[str]:
        """The options of a component this config states (preset, file or ``--set``)."""
        return frozenset(self.tables.get(kind, {}).get(name, {}))

    def check_tables(
        self, registered: Mapping[str, Mapping[str, ComponentSpec]], blocked: Mapping[str, Collection[str]] | None = None
    ) -> None:
        """Validate every component table against the registry.

        A table for a component no plugin registers is an error (naming the close match or the
        registered names), unless it names a component of a plugin blocked with
        ``--disable-plugin`` (``blocked``, see :func:`check_component_tables`).
        """
        check_component_tables(self.tables, registered, self.source, blocked=blocked)

    def selected(self, registered: Mapping[str, Mapping[str, ComponentSpec]]) -> None:
        """Raise :class:`ComponentNotFoundError` for a selected component nobody provides, and
        :class:`~ovpanoptic.errors.AmbiguousNameError` for one that several plugins register."""
        for kind in ("proposal_generator", "classifier", "fuser"):
            name = getattr(self.pipeline, kind)
            if name in registered.get(kind, {}):
                registered[kind][name]  # noqa: B018 - a name several plugins register raises here, naming them
            else:
                available = sorted(registered.get(kind, {}))
                raise ComponentNotFoundError(
                    f"{KINDS[kind]} {name!r} (pipeline.{kind} in {self.source}) is not provided by any "
                    f"installed, enabled plugin. Available: {', '.join(available) or '(none)'}. Install "
                    f"the plugin that provides it, or choose another with --set pipeline.{kind}=NAME"
                )


def load_config(spec: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a preset by name or a TOML file by path, then apply ``--set`` overrides.

    :param spec: preset name (see :func:`list_presets`), path to a ``.toml`` file, or ``None`` for
        the ``default`` preset.
    :raises ConfigError: the preset or file does not exist or is invalid.
    """
    path = _find_toml(DEFAULT_PRESET if spec is None else str(spec), list_presets(), "preset", "--config")
    data = _read_toml(path, "config")
    config = Config.from_dict(data, source=str(path))
    return config.with_overrides(overrides) if overrides else config
