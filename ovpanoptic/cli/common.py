"""What the command modules share: option groups, the engine choice, progress and output, logging,
and the mapping of errors to exit codes.

Exit codes: :data:`EXIT_OK` (0) success; :data:`EXIT_SOME_FAILED` (1) some inputs failed; :data:`EXIT_USAGE` (2) a
usage, config, vocabulary or plugin error; :data:`EXIT_INTERRUPTED` (130) Ctrl+C.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO, TypeAlias

from ..constants import DEFAULT_PRESET, DISABLE_PLUGINS_ENV
from ..errors import InputError, OvpanopticError

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "EXIT_USAGE",
    "Engine",
    "Handler",
    "Say",
    "StderrHandler",
    "Subcommands",
    "add_vocabulary_options",
    "config_options",
    "engine_options",
    "engine_pipeline",
    "log",
    "plugin_options",
    "prepare_vocabulary",
    "print_error",
    "ray_options",
    "run_handler",
    "run_images",
    "setup_logging",
]

#: every command logs under this one name (``-v`` prints ``INFO ovpanoptic.cli: ...``)
log = logging.getLogger("ovpanoptic.cli")

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl+C

#: a command's function, ``(args, stdout, stderr) -> exit code``; each command's parser names its own
#: with ``set_defaults(handler=...)``
Handler = Callable[[argparse.Namespace, TextIO, TextIO], int]

#: what ``ArgumentParser.add_subparsers()`` returns; each command module's ``add_NAME`` adds its parser to it
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def plugin_options() -> argparse.ArgumentParser:
    """``--disable-plugin`` and ``-v``, as a parent parser for every command that loads plugins."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("plugins")
    group.add_argument(
        "--disable-plugin",
        metavar="NAME",
        action="append",
        default=[],
        help=f"block a plugin by name (repeatable; also {DISABLE_PLUGINS_ENV}=a,b). "
        "Use it to get going again when a plugin fails to import",
    )
    parent.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    return parent


def config_options(default_preset: str = DEFAULT_PRESET) -> argparse.ArgumentParser:
    """``--config``, ``--set`` and ``--device``, as a parent parser; ``--config``'s help names ``default_preset``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration")
    group.add_argument(
        "--config", metavar="NAME|PATH", default=None, help=f"preset name (see 'ovpanoptic presets') or TOML file; default: {default_preset}"
    )
    group.add_argument(
        "--set",
        metavar="KEY=VALUE",
        dest="overrides",
        action="append",
        default=[],
        help="override one config value, e.g. --set pipeline.max_side=512 or "
        "--set proposal_generator.sam2.points_per_side=16 (repeatable)",
    )
    group.add_argument("--device", default=None, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    return parent


def engine_options() -> argparse.ArgumentParser:
    """``--engine`` and the Ray options (read by :func:`ray_options`), as a parent parser."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("engine (docs/scale.md)")
    group.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="local: this process, one image after another (default); ray: long-lived pipelines in Ray workers "
        "(pip install 'ovpanoptic[ray]')",
    )
    group.add_argument(
        "--address", metavar="auto|HOST:PORT", default=None,
        help="--engine ray: join this Ray cluster (auto: the one started on this machine with 'ray start'); "
        "default: start a Ray instance of its own on this machine for the run (never a running cluster)",
    )
    group.add_argument("--workers", type=int, default=None, metavar="N", help="--engine ray: pipelines to run (default: as many as the CPUs/GPUs allow)")
    group.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="F", help="--engine ray: GPUs per worker, e.g. 1 or 0.5 (default: 0, CPU workers)")
    group.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="F", help="--engine ray: CPUs (and torch threads) per worker (default: %(default)s)")
    return parent


def add_vocabulary_options(group: Any) -> None:
    """``--classes``, ``--stuff``, ``--things`` and ``--vocabulary``, into ``group`` (what ``Pipeline.vocabulary`` and
    ``Registry.parse_vocabulary`` read)."""
    group.add_argument(
        "--classes",
        default="",
        help="comma-separated class names; '|' separates synonyms (\"tv|television\"). Unflagged names "
        "are stuff when the built-in stuff lexicon knows them, else things",
    )
    group.add_argument("--stuff", default="", help="names that are stuff (amorphous regions: \"road, sky\")")
    group.add_argument("--things", default="", help="names that are things (countable objects), overriding the lexicon")
    group.add_argument(
        "--vocabulary", metavar="NAME", default=None, help="a named vocabulary instead of --classes (see 'ovpanoptic vocabularies')"
    )


def ray_options(args: argparse.Namespace) -> Any:
    """The :class:`RayOptions` of ``--engine ray``, or ``None`` for the local engine.

    :raises InputError: a Ray option given without ``--engine ray``, or out of range.
    """
    ray_only = {"--address": args.address is not None, "--workers": args.workers is not None,
                "--gpus-per-worker": args.gpus_per_worker != 0.0, "--cpus-per-worker": args.cpus_per_worker != 1.0}
    if args.engine != "ray":
        given = [name for name, on in ray_only.items() if on]
        if given:
            raise InputError(f"{', '.join(given)} applies to --engine ray: add --engine ray, or leave {given[0]} out")
        return None
    from ..engines.ray_engine import RayOptions

    return RayOptions(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker)


@dataclasses.dataclass(frozen=True)
class Engine:
    """The engine of a command: ``options`` ``None`` for the local one; for Ray, the workers'
    config (the user's device) while the driver's pipeline runs on the CPU (it segments nothing)."""

    options: Any = None
    worker_config: Any = None


def engine_pipeline(args: argparse.Namespace, overrides: Sequence[str]) -> tuple[Any, Engine]:
    """The command's pipeline and engine, every engine option checked before any work.

    :raises InputError: a Ray option without ``--engine ray``, or one that cannot work.
    """
    from ..pipeline import Pipeline

    options = ray_options(args)
    pipe = Pipeline(args.config, overrides=overrides, device=args.device, disable_plugins=args.disable_plugin)
    if options is None:
        return pipe, Engine()
    from ..engines.ray_engine import worker_config

    workers = worker_config(pipe.config, options)
    driver = Pipeline(pipe.config.with_overrides(["pipeline.device='cpu'"]), disable_plugins=args.disable_plugin)
    return driver, Engine(options, workers)


def run_images(
    args: argparse.Namespace, engine: Engine, pipe: Any, vocab: Any, inputs: Sequence[Path], outdir: Path, formats: Sequence[str], on_image: Any
) -> Any:
    """Run a batch with the engine ``--engine`` chose (the local one, or Ray)."""
    if engine.options is None:
        from ..engines.local import run_local

        return run_local(pipe, vocab, inputs, outdir, formats, overwrite=args.overwrite, on_image=on_image)
    from ..engines.ray_engine import run_ray

    return run_ray(
        pipe, vocab, inputs, outdir, formats, engine.options, overwrite=args.overwrite, on_image=on_image,
        disable_plugins=args.disable_plugin, config=engine.worker_config,
    )


def prepare_vocabulary(pipe: Any, vocab: Any, quiet: bool, err: TextIO) -> None:
    """The classifier's per-vocabulary work (CLIP: encoding the class names) before any image, with a
    bar on a terminal: bad names are refused first, and what is encoded is cached as it goes."""
    from tqdm import tqdm

    text_bar: Any = None

    def text_progress(message: str, done: int, total: int) -> None:
        nonlocal text_bar
        if text_bar is None and total:
            text_bar = tqdm(total=total, desc=message, unit="name", disable=quiet, file=err)
        if text_bar is not None:
            text_bar.n = done
            text_bar.refresh()

    try:
        pipe.prepare_vocabulary(vocab, text_progress)
    finally:
        if text_bar is not None:
            text_bar.close()


class Say:
    """Prints that never stop a batch: when the output stream fails (a closed pipe, a full disk),
    later lines to it are dropped and the batch goes on (its exit code still tells the outcome)."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self._streams = {"out": out, "err": err}
        self._dead: set[str] = set()

    def _print(self, which: str, text: str, bar: Any = None) -> None:
        if which in self._dead:
            return
        try:
            if bar is not None and which == "err":
                bar.write(text, file=self._streams[which])
            else:
                print(text, file=self._streams[which], flush=True)
        except (OSError, ValueError):  # BrokenPipeError, ENOSPC, a closed file
            self._dead.add(which)

    def out(self, text: str) -> None:
        self._print("out", text)

    def err(self, text: str, bar: Any = None) -> None:
        self._print("err", text, bar)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment, not the one of the first ``main()`` call (the
    CLI run again in one process, e.g. by tests, whose stderr is replaced between runs)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def setup_logging(verbose: int) -> None:
    """ovpanoptic's own loggers at WARNING (INFO with -v, DEBUG with -vv); other libraries' loggers
    stay at WARNING, so -v shows ovpanoptic's story, not every library's."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logger = logging.getLogger("ovpanoptic")
    logger.setLevel(level)
    if not any(getattr(h, "_ovpanoptic_cli", False) for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._ovpanoptic_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def print_error(message: str, stream: TextIO) -> None:
    """Print ``error: MESSAGE`` on ``stream``."""
    print(f"error: {message}", file=stream)


def run_handler(handler: Handler, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run a command's handler and map what it raises to an exit code: an :class:`OvpanopticError` is
    printed as ``error: ...`` (its details with ``-vv``) and exits :data:`EXIT_USAGE`; a closed output pipe
    is no error; Ctrl+C exits :data:`EXIT_INTERRUPTED`."""
    try:
        return int(handler(args, out, err))
    except OvpanopticError as exc:
        log.debug("details of the error below", exc_info=exc)  # -vv: e.g. a plugin's own traceback
        print_error(str(exc), err)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into a pager or head that exited
        return EXIT_OK
    except KeyboardInterrupt:
        print_error("interrupted", err)
        return EXIT_INTERRUPTED
