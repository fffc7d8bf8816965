"""The hand-off to labelling tools: ``ovpanoptic push label-studio`` (an output folder into a Label Studio
project) and ``ovpanoptic serve label-studio`` (its ML backend), each command's options beside the function
that runs it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from ..errors import InputError
from .common import EXIT_OK, Subcommands, add_vocabulary_options, config_options, plugin_options, prepare_vocabulary

__all__ = ["add_push", "add_serve", "cmd_push", "cmd_serve"]


def add_push(sub: Subcommands) -> None:
    """``ovpanoptic push label-studio``: its options; it runs :func:`cmd_push`."""
    pu = sub.add_parser("push", help="send an output folder to a labelling tool (a Label Studio project)")
    pushes = pu.add_subparsers(dest="target", metavar="TOOL", required=True)
    pls = pushes.add_parser(
        "label-studio",
        help="create or update a Label Studio project from a label-studio export: config, storage, tasks",
        description="Create a Label Studio project (or update --project ID) with OUTDIR/label-studio.xml as its "
        "labelling config, connect --images as its Local files storage (not synced), and import OUTDIR's tasks in "
        "chunks under Label Studio's 250 MB import limit, their image URLs pointing into that storage and their "
        "predictions under a model version of this push (label-studio-sdk).",
    )
    pls.add_argument("outdir", metavar="OUTDIR", help="output folder of 'ovpanoptic segment ... --format label-studio'")
    pls.add_argument("--label-studio-url", metavar="URL", default=None, help="Label Studio's address (default: $LABEL_STUDIO_URL)")
    pls.add_argument("--label-studio-token", metavar="TOKEN", default=None,
                     help="personal access token or legacy token (default: $LABEL_STUDIO_API_KEY)")
    pls.add_argument("--title", default=None, help="project title (default: the folder's name)")
    pls.add_argument("--project", type=int, default=None, metavar="ID", help="update this project instead of creating one")
    pls.add_argument("--images", metavar="DIR", default=None,
                     help="the images' folder, a subfolder of Label Studio's local-files root: connected as Local files storage")
    pls.add_argument("--local-files-root", metavar="DIR", default=None,
                     help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: that variable)")
    pls.add_argument("--chunk-mb", type=float, default=200.0, metavar="MB", help="largest import request (default: %(default)s)")
    pls.add_argument("--model-version", default=None, metavar="NAME",
                     help="the predictions' model version (default: ovpanoptic-VERSION-push-TIME, new at each push)")
    pu.set_defaults(handler=cmd_push)


def cmd_push(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Import an output folder into a Label Studio project and print where it went."""
    import os

    from ..formats.label_studio.push import push_label_studio

    url = args.label_studio_url or os.environ.get("LABEL_STUDIO_URL")
    token = args.label_studio_token or os.environ.get("LABEL_STUDIO_API_KEY")
    if not url or not token:
        raise InputError("push needs Label Studio's address and a token: give --label-studio-url and --label-studio-token "
                         "(or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY)")
    root = args.local_files_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    result = push_label_studio(
        Path(args.outdir), url=url, token=token, title=args.title, project_id=args.project,
        images=Path(args.images) if args.images else None, local_files_root=Path(root) if root else None,
        chunk_mb=args.chunk_mb, model_version=args.model_version,
    )
    print(f"project {result.project_id}: {result.tasks} tasks imported in {result.chunks} request(s), model version "
          f"{result.model_version}" + (f", local files storage {result.storage_id}" if result.storage_id else "")
          + f"\n{result.url}", file=out)
    return EXIT_OK


def add_serve(sub: Subcommands) -> None:
    """``ovpanoptic serve label-studio``: its options; it runs :func:`cmd_serve`."""
    sr = sub.add_parser("serve", help="run a server that a labelling tool calls (Label Studio's ML backend)")
    servers = sr.add_subparsers(dest="server", metavar="SERVER", required=True)
    ls = servers.add_parser(
        "label-studio",
        parents=[config_options(), plugin_options()],
        help="Label Studio ML backend: pre-annotations for tasks and masks for the user's clicks",
        description="Answer Label Studio's ML backend protocol (health, setup, predict; interactive prediction from "
        "keypoints and rectangles with SAM 2). Connect it in the project: Settings -> Model -> Connect model, URL "
        "http://HOST:PORT. Example: ovpanoptic serve label-studio --classes \"person, forklift, pallet\" --stuff "
        "\"floor, shelf\" --label-studio-url http://127.0.0.1:8080 --label-studio-token TOKEN",
    )
    add_vocabulary_options(ls.add_argument_group(
        "vocabulary (default: the classes of each project's BrushLabels tag)"
    ))
    net = ls.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    net.add_argument("--port", type=int, default=9090, help="TCP port (default: %(default)s)")
    net.add_argument("--basic-auth", metavar="USER:PASSWORD", default=None,
                     help="require HTTP Basic authentication (Label Studio's ML backend 'Basic auth' fields); default "
                     "from $OVPANOPTIC_BASIC_AUTH")
    net.add_argument("--no-auth", action="store_true", help="serve an address other than loopback without --basic-auth")
    net.add_argument("--max-request-mb", type=float, default=16.0, metavar="MB", help="largest request body (default: %(default)s)")
    net.add_argument("--predict-budget-s", type=float, default=80.0, metavar="S",
                     help="seconds one /predict request may segment; tasks not reached get no prediction and are asked "
                     "for again at the next 'Retrieve predictions' (default: %(default)s, under Label Studio's 100 s timeout)")
    net.add_argument("--model-version", default=None, metavar="NAME",
                     help="model version reported to Label Studio (default: ovpanoptic-VERSION-serve-START_TIME, new at "
                     "each start, so Label Studio asks again about tasks that hold older predictions)")
    images = ls.add_argument_group("where images come from (nothing else is fetched)")
    images.add_argument("--label-studio-url", metavar="URL", default=None,
                        help="Label Studio's address, e.g. http://127.0.0.1:8080 (default: $LABEL_STUDIO_URL); task images "
                        "are fetched from there only")
    images.add_argument("--label-studio-token", metavar="TOKEN", default=None,
                        help="Label Studio API token (personal access token or legacy token; default: $LABEL_STUDIO_API_KEY)")
    images.add_argument("--local-files-root", metavar="DIR", default=None,
                        help="read /data/local-files/?d=PATH images from this folder (Label Studio's "
                        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT; default: that variable)")
    images.add_argument("--max-image-mb", type=float, default=64.0, metavar="MB", help="largest image fetched (default: %(default)s)")
    ls.add_argument("--print-config", action="store_true",
                    help="print the labelling config for the vocabulary (with the interactive point and box tools) and exit")
    sr.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Serve the Label Studio ML backend until Ctrl+C, SIGTERM or SIGHUP (``--print-config``: print the labelling
    config)."""
    import os

    from ..pipeline import Pipeline
    from ..serve import FetchPolicy, LabelStudioBackend, ServeOptions, check_exposure, make_server

    pipe = Pipeline(args.config, overrides=args.overrides, device=args.device, disable_plugins=args.disable_plugin)
    given = args.classes.strip() or args.stuff.strip() or args.things.strip() or args.vocabulary
    vocab = pipe.vocabulary(args.classes, args.stuff, args.things, name=args.vocabulary) if given else None
    exporter = pipe.component("exporter", "label-studio")
    if args.print_config:
        if vocab is None:
            raise InputError("--print-config needs the classes: give --classes or --vocabulary")
        print(exporter.labelling_config(vocab, interactive=True), file=out, end="")
        return EXIT_OK
    auth_text = args.basic_auth or os.environ.get("OVPANOPTIC_BASIC_AUTH")
    auth = None
    if auth_text:
        user, sep, password = auth_text.partition(":")
        if not sep:
            raise InputError("--basic-auth must be USER:PASSWORD")
        auth = (user, password)
    for flag, value in (("--max-request-mb", args.max_request_mb), ("--max-image-mb", args.max_image_mb)):
        if not value > 0:
            raise InputError(f"{flag} must be a positive number of megabytes, got {value}")
    if not args.predict_budget_s > 0:
        raise InputError(f"--predict-budget-s must be a positive number of seconds, got {args.predict_budget_s}")
    root = args.local_files_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT")
    try:
        options = ServeOptions(args.host, args.port, auth, int(args.max_request_mb * 1024 * 1024), no_auth=args.no_auth)
        policy = FetchPolicy(
            label_studio_url=args.label_studio_url or os.environ.get("LABEL_STUDIO_URL"),
            token=args.label_studio_token or os.environ.get("LABEL_STUDIO_API_KEY"),
            local_files_root=Path(root) if root else None,
            max_image_bytes=int(args.max_image_mb * 1024 * 1024),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    check_exposure(options)
    if vocab is not None:
        prepare_vocabulary(pipe, vocab, True, err)
    backend = LabelStudioBackend(pipe, vocab, policy, model_version=args.model_version, predict_budget_s=args.predict_budget_s)
    try:
        server = make_server(
            backend, options, on_bind=lambda host, port: print(f"Label Studio ML backend on http://{host}:{port} (Ctrl-C stops)", file=err, flush=True)
        )
    except OSError as exc:
        backend.close()
        raise InputError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): choose another --port or --host") from None
    import threading

    from ..stopping import stop_on_sigterm

    # Served from a thread, so that Ctrl+C, SIGTERM and SIGHUP all end in the same clean shutdown
    # (the fetched images are removed).
    serving = threading.Thread(target=server.serve_forever, name="label-studio-backend", daemon=True)
    with stop_on_sigterm() as stop:
        serving.start()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
            backend.close()
    return EXIT_OK
