"""The ``ovpanoptic`` command line.

Exit codes: 0 success; 1 some inputs failed (an unreadable image, or a plugin component that
failed on it: each is reported, the batch goes on); 2 a usage, config, vocabulary or plugin error
(a plugin that cannot be loaded or registered, or whose component cannot be built: reported before
any output is written).

Each command's options are defined beside the function that runs it: ``add_NAME(sub)`` adds the command's
parser and names its handler ``cmd_NAME`` with ``set_defaults(handler=...)``. This module only assembles the
parser (:data:`COMMANDS`, in the order ``--help`` lists them) and runs :func:`main`.

- :mod:`.segment`: ``segment``, ``segment-video``
- :mod:`.evaluate`: ``eval``, ``eval-video``, ``evaluate`` (and the reading of labelled sets ``qa`` shares)
- :mod:`.qa`: ``qa``, ``package``
- :mod:`.labelling`: ``push``, ``serve``
- :mod:`.info`: ``plugins``, ``doctor``, ``new-plugin``, ``vocabularies``, ``download``, ``presets``
- :mod:`.demo`: ``demo``
- :mod:`.common`: option groups, engines, progress and output, logging, errors to exit codes

The command modules import :mod:`.common` (and ``qa`` imports :mod:`.evaluate`), never this package; they import
the rest of ovpanoptic inside the functions that run a command, so that ``ovpanoptic --help`` loads no torch,
Gradio or Ray. Core code never imports ``ovpanoptic.cli``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from .. import __version__
from . import demo, evaluate, info, labelling, qa, segment
from .common import EXIT_USAGE, Subcommands, run_handler, setup_logging

__all__ = ["COMMANDS", "build_parser", "main"]

#: each command's ``add_NAME``, in the order ``ovpanoptic --help`` lists the commands
COMMANDS: tuple[Callable[[Subcommands], None], ...] = (
    segment.add_segment,
    segment.add_segment_video,
    evaluate.add_eval_video,
    info.add_plugins,
    info.add_doctor,
    info.add_new_plugin,
    info.add_vocabularies,
    evaluate.add_evaluate,
    evaluate.add_eval,
    qa.add_qa,
    qa.add_package,
    labelling.add_push,
    labelling.add_serve,
    info.add_download,
    demo.add_demo,
    info.add_presets,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="ovpanoptic",
        description="Open-vocabulary panoptic segmentation: type class names, get every pixel labelled "
        "and every object its own id.",
    )
    parser.add_argument("--version", action="version", version=f"ovpanoptic {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    for stream in (out, err):  # file names that are not UTF-8 still print (as \x.. escapes)
        reconfigure = getattr(stream, "reconfigure", None)
        if callable(reconfigure) and getattr(stream, "errors", "strict") == "strict":
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(out)
        return EXIT_USAGE
    setup_logging(getattr(args, "verbose", 0))
    return run_handler(args.handler, args, out, err)
