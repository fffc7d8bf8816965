"""``ovpanoptic demo``: its options beside the function that serves the Gradio demo (imported when it runs)."""

from __future__ import annotations

import argparse
from typing import TextIO

from ..constants import DEMO_PRESET
from ..errors import InputError
from .common import EXIT_OK, Subcommands, config_options, plugin_options

__all__ = ["add_demo", "cmd_demo"]


def add_demo(sub: Subcommands) -> None:
    """``ovpanoptic demo``: its options; it runs :func:`cmd_demo`."""
    de = sub.add_parser(
        "demo",
        parents=[config_options(DEMO_PRESET), plugin_options()],
        help="start the Gradio demo (upload an image, type class names, see the result)",
        description="Serve the Gradio demo on this machine: upload an image, type class names, see the "
        "panoptic result, re-query with other names instantly. Stop it with Ctrl+C.",
    )
    de.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only; "
        "0.0.0.0 exposes the demo to your network)"
    )
    de.add_argument("--port", type=int, default=7860, help="port (default: %(default)s)")
    de.add_argument("--max-file-size", default="25mb", metavar="SIZE", help="upload limit, e.g. 25mb or 1gb (default: %(default)s)")
    de.add_argument(
        "--auth", action="append", default=[], metavar="USER:PASSWORD",
        help="require a login (Gradio's login page); repeat for several users. Needed to serve an address other "
        "than loopback (e.g. --host 0.0.0.0), unless --no-auth",
    )
    de.add_argument("--auth-file", metavar="FILE", help="USER:PASSWORD lines (blank lines and # comments skipped), like --auth")
    de.add_argument(
        "--no-auth", action="store_true",
        help="serve an address other than loopback without a login (anyone who reaches it can use the demo)",
    )
    de.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve the Gradio demo until Ctrl+C, SIGTERM or SIGHUP."""
    from ..demo import (
        build_demo,
        check_exposure,
        check_file_size,
        launch_demo,
        parse_auth,
        read_auth_file,
        stop_on_sigterm,
    )

    auth = [parse_auth(text) for text in args.auth]
    if args.auth_file:
        auth += read_auth_file(args.auth_file)
    if auth and args.no_auth:
        raise InputError("--no-auth and --auth/--auth-file contradict each other: keep one")
    check_exposure(args.host, auth, args.no_auth)
    if not 1 <= args.port <= 65535:
        raise InputError(f"the port must be a number from 1 to 65535, got {args.port} (--port)")
    check_file_size(args.max_file_size)
    with stop_on_sigterm() as stop:  # from here on, SIGTERM or SIGHUP stop the demo and remove its folder
        demo = build_demo(
            config=args.config, overrides=args.overrides, device=args.device, disable_plugins=args.disable_plugin,
            private_uploads=True,
        )
        try:
            if stop.is_set():  # asked to stop while the page was being built
                return EXIT_OK
            login = f", login required for {len(auth)} user{'s' if len(auth) != 1 else ''}" if auth else ""

            def ready() -> None:
                print(f"ovpanoptic demo: http://{args.host}:{args.port}{login} (Ctrl+C stops it)", file=out, flush=True)

            launch_demo(
                demo, host=args.host, port=args.port, max_file_size=args.max_file_size, auth=auth,
                no_auth=args.no_auth, ready=ready, stop=stop,
            )
        finally:
            demo.ovpanoptic_app.close()
    return EXIT_OK
