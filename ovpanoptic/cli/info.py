"""What is installed and how to get going: ``ovpanoptic plugins``, ``doctor``, ``new-plugin``,
``vocabularies``, ``download`` and ``presets``, each command's options beside the function that runs it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from ..errors import AmbiguousNameError, InputError, OvpanopticError
from .common import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, Subcommands, config_options, plugin_options, print_error

__all__ = [
    "add_doctor",
    "add_download",
    "add_new_plugin",
    "add_plugins",
    "add_presets",
    "add_vocabularies",
    "cmd_doctor",
    "cmd_download",
    "cmd_new_plugin",
    "cmd_plugins",
    "cmd_presets",
    "cmd_vocabularies",
]


def add_plugins(sub: Subcommands) -> None:
    """``ovpanoptic plugins``: its options; it runs :func:`cmd_plugins`."""
    pl = sub.add_parser(
        "plugins",
        parents=[plugin_options()],
        help="list installed plugins and what they provide, or show one plugin or component",
        description="Without NAME: every plugin, its distribution, hooks and components, and any plugin that "
        "failed to register (exit code 2 then). With NAME (a plugin or a component name): each matching "
        "component's description and config fields with their types and defaults.",
    )
    pl.add_argument("name", nargs="?", help="a plugin or component name")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(handler=cmd_plugins)


def _format_default(value: Any) -> str:
    """A config field's default as ``plugins NAME`` shows it."""
    import dataclasses

    return "(required)" if value is dataclasses.MISSING else repr(value)


def _component_details(registry: Any, name: str) -> list[dict[str, Any]]:
    """Every component provided by plugin ``name``, or named ``name``, with its config fields."""
    from ..components import KINDS
    from ..config import describe_fields

    details = []
    for kind, specs in registry.components.items():
        for spec in specs.values():
            if name not in (spec.plugin, spec.name, f"{spec.plugin}:{spec.name}"):  # a shared name lists each plugin's
                continue
            details.append(
                {
                    "kind": KINDS[kind],
                    "name": spec.name,
                    "plugin": spec.plugin,
                    "distribution": registry.origin(spec.plugin).distribution,
                    "description": spec.description,
                    "config": spec.config_class.__name__,
                    "fields": [
                        {"name": f, "type": t, "default": _format_default(d)} for f, t, d in describe_fields(spec.config_class)
                    ],
                    "set": f"--set {kind}.{spec.name}.KEY=VALUE",
                }
            )
    return details


def cmd_plugins(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """List the plugins, or show one plugin's or component's details; 2 when a plugin failed to register."""
    from ..plugins import Registry

    try:
        registry = Registry.create(args.disable_plugin, strict=False)
    except OvpanopticError as exc:  # a plugin that cannot even be loaded
        if args.json:
            print(json.dumps({"error": str(exc)}, indent=2), file=out)
        raise
    infos = registry.plugins()
    if args.name:
        details = _component_details(registry, args.name)
        info = next((i for i in infos if i.name == args.name), None)
        if not details and info is None:
            names = sorted({i.name for i in infos} | {n for specs in registry.components.values() for n in specs})
            raise InputError(f"no plugin or component named {args.name!r}. Plugins and components: {', '.join(names)}")
        if args.json:
            print(json.dumps({"plugin": info.__dict__ if info else None, "components": details}, indent=2, default=str), file=out)
            return EXIT_USAGE if info is not None and info.problem else EXIT_OK
        if info is not None:
            origin = "built-in" if info.builtin else f"{info.distribution} {info.version}".strip()
            print(f"plugin {info.name} ({origin}){' [disabled]' if info.blocked else ''}", file=out)
            if info.problem:
                print(f"  error: {info.problem}", file=out)
                return EXIT_USAGE
        for d in details:
            print(f"{d['kind']} {d['name']}  (plugin {d['plugin']}, {d['distribution']})", file=out)
            if d["description"]:
                print(f"  {d['description']}", file=out)
            if d["fields"]:
                print(f"  options ({d['set']}):", file=out)
                for f in d["fields"]:
                    print(f"    {f['name']}: {f['type']} = {f['default']}", file=out)
            else:
                print("  options: none", file=out)
        return EXIT_OK
    if args.json:
        print(json.dumps([info.__dict__ for info in infos], indent=2), file=out)
        return EXIT_USAGE if registry.problems else EXIT_OK
    for info in infos:
        origin = "built-in" if info.builtin else f"{info.distribution} {info.version}".strip()
        state = " [disabled]" if info.blocked else " [error]" if info.problem else ""
        print(f"{info.name}{state}  ({origin})", file=out)
        if info.hooks:
            print(f"  hooks: {', '.join(info.hooks)}", file=out)
        for comp in info.components:
            print(f"  provides {comp}", file=out)
        if info.problem:
            print(f"  error: {info.problem}", file=out)
    if registry.problems:
        print_error(f"{len(registry.problems)} plugin(s) failed to register: {', '.join(sorted(registry.problems))} (see above)", err)
        return EXIT_USAGE
    return EXIT_OK


def add_doctor(sub: Subcommands) -> None:
    """``ovpanoptic doctor``: its options; it runs :func:`cmd_doctor`."""
    dr = sub.add_parser(
        "doctor",
        parents=[plugin_options()],
        help="show the environment (versions, device, CPU, cached weights, plugins) and what is missing",
        description="Check the environment: Python and package versions, the device and CPU instruction set, "
        "offline mode, the weights in the cache and where, ovpanoptic's cache, and every plugin's health. "
        "Exit code 1 when something required is missing or broken; each such line says how to fix it.",
    )
    dr.add_argument("--json", action="store_true", help="machine-readable output")
    dr.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the environment checks; 1 when a required one failed."""
    from ..doctor import run_checks

    checks = run_checks(args.disable_plugin)
    failed = [c for c in checks if not c.ok and c.required]
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2), file=out)
    else:
        width = max(len(c.topic) for c in checks)
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "note")
            print(f"{mark} {c.topic:<{width}}  {c.found}", file=out)
            if c.fix and not c.ok:
                print(f"     {'':<{width}}  {'fix' if c.required else 'hint'}: {c.fix}", file=out)
    if failed:
        print_error(f"{len(failed)} required check(s) failed: {', '.join(c.topic for c in failed)}", err)
        return EXIT_SOME_FAILED
    return EXIT_OK


def add_new_plugin(sub: Subcommands) -> None:
    """``ovpanoptic new-plugin``: its options; it runs :func:`cmd_new_plugin`."""
    npl = sub.add_parser(
        "new-plugin",
        help="write a new plugin package (a proposal generator and an exporter, with tests) to start from",
        description="Write a plugin package into DIR: pyproject.toml with the entry point, a module with a "
        "proposal generator and an exporter, and tests using the ovpanoptic.testing kit. Then: "
        "pip install -e DIR && pytest DIR",
    )
    npl.add_argument("directory", metavar="DIR", help="folder to create (must not exist or be empty)")
    npl.add_argument("--name", default=None, help="plugin name (default: the folder's name)")
    npl.set_defaults(handler=cmd_new_plugin)


def cmd_new_plugin(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Write a plugin package to start from into ``DIR`` and print its files."""
    from ..template import write_plugin_template

    written = write_plugin_template(Path(args.directory), args.name)
    for path in written:
        print(path, file=out)
    print(f"next: pip install -e {args.directory} && pytest {args.directory}", file=out)
    return EXIT_OK


def add_vocabularies(sub: Subcommands) -> None:
    """``ovpanoptic vocabularies``: its options; it runs :func:`cmd_vocabularies`."""
    vo = sub.add_parser("vocabularies", parents=[plugin_options()], help="list named vocabularies, or show one")
    vo.add_argument("name", nargs="?", help="show this vocabulary's classes")
    vo.add_argument("--json", action="store_true", help="machine-readable output")
    vo.set_defaults(handler=cmd_vocabularies)


def cmd_vocabularies(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """List the named vocabularies, or print one's classes."""
    from ..plugins import Registry

    registry = Registry.create(args.disable_plugin)
    if args.name:
        vocab = registry.vocabulary(args.name)
        if args.json:
            print(json.dumps(vocab.to_dict(), indent=2), file=out)
            return EXIT_OK
        for c in vocab.categories:
            kind = "thing" if c.isthing else "stuff"
            syn = f"  ({', '.join(c.synonyms)})" if c.synonyms else ""
            print(f"{c.id:>4}  {kind}  {c.name}{syn}", file=out)
        return EXIT_OK
    specs = sorted(registry.vocabularies.values(), key=lambda s: s.name)
    if args.json:
        print(json.dumps([{"name": s.name, "description": s.description, "plugin": s.plugin} for s in specs], indent=2), file=out)
        return EXIT_OK
    for s in specs:
        print(f"{s.name:<20} {s.description}  [{s.plugin}]", file=out)
    return EXIT_OK


def add_download(sub: Subcommands) -> None:
    """``ovpanoptic download``: its options; it runs :func:`cmd_download`."""
    dl = sub.add_parser(
        "download",
        parents=[config_options(), plugin_options()],
        help="fetch a component's model weights into the local cache ahead of time",
        description="Fetch the weights a component needs (e.g. 'ovpanoptic download sam2 --size tiny', "
        "'ovpanoptic download clip') so later runs work offline (HF_HUB_OFFLINE=1).",
    )
    dl.add_argument("component", metavar="COMPONENT", help="component name, e.g. sam2 or clip")
    dl.add_argument(
        "--model",
        "--size",
        dest="model",
        default=None,
        help="the model to fetch (sets the component's 'model' option): a size for sam2 "
        "(tiny, small, base_plus, large), an architecture for clip, or hf-hub:ORG/REPO/FILE",
    )
    dl.set_defaults(handler=cmd_download)


def cmd_download(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Fetch the weights of ``COMPONENT`` into the cache and print their paths."""
    from ..components import KINDS, Downloadable
    from ..pipeline import Pipeline

    pipe = Pipeline(args.config, overrides=args.overrides, device=args.device or "cpu", disable_plugins=args.disable_plugin)
    kinds = [k for k in KINDS if args.component in pipe.registry.components.get(k, {})]
    if not kinds:
        names = sorted({n for specs in pipe.registry.components.values() for n in specs})
        raise InputError(f"no component named {args.component!r}; components: {', '.join(names)}")
    if args.model is not None:
        pipe = Pipeline(
            pipe.config.with_overrides([f"{k}.{args.component}.model={args.model!r}" for k in kinds]),
            registry=pipe.registry,
            device=args.device or "cpu",
        )
    fetched = 0
    for kind in kinds:
        component = pipe.component(kind, args.component)
        if isinstance(component, Downloadable):
            from .. import boundary

            target = pipe.registry.target(pipe.registry.component(kind, args.component))
            try:
                files = boundary.call(target, "download()", component.download, user_errors=(*boundary.USER_ERRORS, OSError))
            except OSError as exc:  # the network or the disk, not the plugin
                raise InputError(
                    f"{args.component}: the download failed ({type(exc).__name__}: {exc}); check the network connection "
                    "(and HF_HUB_OFFLINE), or fetch the file elsewhere and pass its path with --model PATH"
                ) from None
            for path in boundary.check_download(target, files):
                print(f"{args.component}: {path}", file=out)
            fetched += 1
    if not fetched:
        raise InputError(f"{args.component!r} has no weights to download")
    return EXIT_OK


def add_presets(sub: Subcommands) -> None:
    """``ovpanoptic presets``: its options; it runs :func:`cmd_presets`."""
    pr = sub.add_parser(
        "presets",
        parents=[plugin_options()],
        help="list config presets, or show the resolved config of one",
        description="Without NAME: the presets and their files. With NAME: the config after --set overrides, "
        "every component table resolved with its component's defaults and checked against the installed plugins.",
    )
    pr.add_argument("name", nargs="?", help="show this preset (name or path) after --set overrides")
    pr.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[])
    pr.set_defaults(handler=cmd_presets)


def cmd_presets(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """List the presets, or print one, resolved after ``--set``, as JSON."""
    from ..config import PROFILE_PIPELINE_KEYS, list_presets, load_config

    if args.name:
        import dataclasses

        from ..pipeline import Pipeline
        from ..plugins import Registry

        config = load_config(args.name, args.overrides)
        registry = Registry.create(args.disable_plugin)
        config.selected(registry.components)
        config.check_tables(registry.components, registry.blocked_components())
        setting = config.pipeline.device_profile.strip()
        profile = None
        if setting not in ("auto", "none"):
            profile = Pipeline(config, registry=registry).device_profile  # validated against the components
        data = config.to_dict()
        for key in PROFILE_PIPELINE_KEYS:  # the profile's tracker and batch size, as a run would use them
            if profile is not None and key not in config.stated and profile.pipeline.get(key):
                data["pipeline"][key] = profile.pipeline[key]
        for kind in ("proposal_generator", "classifier", "fuser", "tracker"):
            name = data["pipeline"][kind]
            data.setdefault(kind, {})[name] = {}
        for name in config.pipeline.exporters:
            data.setdefault("exporter", {})[name] = {}
        for name in config.pipeline.refiners:
            data.setdefault("refiner", {})[name] = {}
        for kind, tables in list(data.items()):
            if kind == "pipeline":
                continue
            for name in tables:
                try:
                    spec = registry.components.get(kind, {}).get(name)
                except AmbiguousNameError:  # a table for a name several plugins register: shown as given
                    continue
                if spec is None:  # a table for a plugin that is not installed: shown as given
                    continue
                tables[name] = dataclasses.asdict(config.component_config(spec, profile.table(kind, name) if profile else None))
        print(json.dumps(data, indent=2, default=str), file=out)
        if setting == "auto":
            print(
                "device_profile = 'auto': options the config leaves unset come from the profile of the device found at run "
                "time (configs/devices/; 'ovpanoptic doctor' names it, -v prints its values); shown above without it",
                file=err,
            )
        return EXIT_OK
    for name, path in sorted(list_presets().items()):
        print(f"{name:<20} {path}", file=out)
    return EXIT_OK
