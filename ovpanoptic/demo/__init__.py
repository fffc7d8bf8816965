"""The Gradio demo: a small model-assisted labelling workbench.

Upload an image, type class names (or load a named vocabulary and edit it), segment; inspect the
segments (outlines and names on the image, opacity, classes on and off, per-stage timings and
why proposals were dropped); tune the thresholds (fusion re-fuses from the cache); correct the
result (SAM 2 point and box prompts on the cached image embedding, relabel, delete, merge, undo);
download the labels.

:func:`build_demo` is the factory (``ovpanoptic demo`` and ``python demo/app.py`` call it, then
:func:`launch_demo`). Importing this package imports neither gradio nor torch; models load on the
first request. The package:

* :mod:`.render`: labels, colours, the composite image, the table;
* :mod:`.state`: the per-browser-session :class:`~.state.Session` and the inputs of a run;
* :mod:`.resources`: :class:`~.resources.DemoResources`, the shared resources (registry, pipelines
  per preset and threshold setting, decoded uploads, sessions, the temporary folder), and the
  page's constants and :class:`DemoSettings`;
* :mod:`.downloads`: the zip;
* :mod:`.handlers`: the handlers as plain functions of ``(app, session, ...)``;
* :mod:`.video`: the Video tab's handler;
* :mod:`.layout`: the Gradio page and its events (imports gradio);
* :mod:`.app`: :class:`DemoApp`, the wiring class: the resources plus :meth:`DemoApp.build`.

The list goes from the bottom up: each module imports only modules listed before it (``layout``
imports ``handlers`` and ``video``; ``handlers``, ``video`` and ``layout`` take the app as a
:class:`~.resources.DemoResources`, so only this ``__init__`` imports :mod:`.app`); no module of the
demo imports this ``__init__``. The package imports the core (pipeline, config, components, editing,
types, vocabulary, imageio, errors, stopping), :mod:`ovpanoptic.video` and :mod:`ovpanoptic.evaluation`
(label files), never :mod:`ovpanoptic.builtins` or the CLI.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, MissingDependencyError
from ..stopping import stop_on_sigterm
from .app import APP_PIPELINE, CUSTOM_VOCABULARY, DemoApp, DemoSettings
from .render import TABLE_HEADERS, segment_labels

if TYPE_CHECKING:
    import gradio

    from ..config import Config
    from ..pipeline import Pipeline
    from ..plugins import Registry

__all__ = [
    "APP_PIPELINE",
    "CUSTOM_VOCABULARY",
    "DEFAULT_HOST",
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_PORT",
    "TABLE_HEADERS",
    "DemoApp",
    "DemoSettings",
    "build_demo",
    "check_exposure",
    "check_file_size",
    "launch_demo",
    "parse_auth",
    "read_auth_file",
    "stop_on_sigterm",
    "segment_labels",
]

log = logging.getLogger(__name__)

#: Loopback only unless the user asks for more (``--host 0.0.0.0`` with ``--auth``).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Upload limit (Gradio's ``max_file_size`` syntax).
DEFAULT_MAX_FILE_SIZE = "25mb"
#: On shutdown, how long a running model call may take to reach its next progress report.
SHUTDOWN_WAIT_S = 10.0


def _import_gradio() -> Any:
    try:
        import gradio
    except ImportError as exc:
        raise MissingDependencyError(
            f"the demo needs gradio ({exc}): run scripts/bootstrap.sh, or pip install 'ovpanoptic[demo]'"
        ) from None
    return gradio


def build_demo(
    pipeline: Pipeline | None = None,
    *,
    config: Config | str | Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    registry: Registry | None = None,
    disable_plugins: Iterable[str] = (),
    settings: DemoSettings | None = None,
    examples_dir: str | Path | None = None,
    private_uploads: bool = False,
) -> gradio.Blocks:
    """Build the demo page (a ``gr.Blocks`` with the queue on); loads no model.

    The :class:`DemoApp` behind it is ``demo.ovpanoptic_app``. See
    :class:`~.resources.DemoResources` (which :class:`DemoApp` extends) for the other parameters.

    :param private_uploads: keep Gradio's uploads and cache in the app's temporary folder (sets
        ``GRADIO_TEMP_DIR`` for this process), so they are deleted with it; the CLI sets it.

    :raises ConfigError: the config is invalid; :raises ComponentNotFoundError: it names a
        component no plugin provides; :raises PluginError: a plugin fails to load;
        :raises MissingDependencyError: gradio is not installed.
    """
    _import_gradio()
    app = DemoApp(
        pipeline, config=config, overrides=overrides, device=device, registry=registry,
        disable_plugins=disable_plugins, settings=settings, examples_dir=examples_dir,
    )
    app.check()
    if private_uploads:
        folder = app.work_dir() / "gradio"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["GRADIO_TEMP_DIR"] = str(folder)
    demo = app.build()
    demo.ovpanoptic_app = app  # type: ignore[attr-defined]
    return demo


def read_auth_file(path: str | Path) -> list[tuple[str, str]]:
    """Read ``USER:PASSWORD`` lines (blank lines and ``#`` comments skipped).

    :raises InputError: the file cannot be read, or a line has no ``:`` or an empty part.
    """
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the auth file {path}: {exc}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pairs.append(parse_auth(line, f"{path}, line {number}"))
    if not pairs:
        raise InputError(f"the auth file {path} holds no USER:PASSWORD line")
    return pairs


def parse_auth(text: str, where: str = "--auth") -> tuple[str, str]:
    """``"USER:PASSWORD"`` -> ``(user, password)``.

    :raises InputError: no ``:``, or an empty user or password.
    """
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise InputError(f"{where}: write USER:PASSWORD (both non-empty), got {'USER:***' if sep else 'no colon'}")
    return user.strip(), password


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, auth: Sequence[tuple[str, str]], no_auth: bool) -> None:
    """Refuse to serve an address other than loopback without a login, unless ``no_auth``.

    :raises InputError: saying how to add a login.
    """
    if not _is_loopback(host) and not auth and not no_auth:
        raise InputError(
            f"refusing to serve the demo on {host} without a login: anyone who can reach this machine could use it "
            "and see what others upload. Add --auth USER:PASSWORD (or --auth-file FILE), or --no-auth if that is "
            "what you want"
        )


def launch_demo(
    demo: gradio.Blocks,
    *,
    host: str = DEFAULT_HOST,
    port: int | None = DEFAULT_PORT,
    max_file_size: str | int | None = DEFAULT_MAX_FILE_SIZE,
    block: bool = True,
    auth: Sequence[tuple[str, str]] = (),
    no_auth: bool = False,
    ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> gradio.Blocks:
    """Serve the demo on ``host:port`` (loopback by default) with an upload limit.

    :param ready: called once the server listens (the CLI prints the address then).
    :param stop: with ``block``, serve until this is set (default: until SIGTERM or SIGHUP, see
        :func:`stop_on_sigterm`, or Ctrl+C).

    :param block: wait until interrupted or sent SIGTERM (the CLI), then delete the app's
        temporary folder; ``False`` returns once the server is up (tests, notebooks): stop it
        with ``demo.close()`` and ``demo.ovpanoptic_app.close()``.
    :param auth: ``(user, password)`` pairs for Gradio's login page.
    :param no_auth: serve an address other than loopback without a login (must be explicit).
    :raises InputError: a non-loopback address without ``auth`` or ``no_auth``; a port outside
        1-65535; an upload limit that is not a size; the port is taken or the address cannot be bound.
    """
    check_exposure(host, auth, no_auth)
    if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
        raise InputError(f"the port must be a number from 1 to 65535, got {port!r}: choose one with --port")
    check_file_size(max_file_size)
    app: DemoApp | None = getattr(demo, "ovpanoptic_app", None)
    from .layout import CSS, JS

    with contextlib.ExitStack() as stack:
        if block and stop is None:
            stop = stack.enter_context(stop_on_sigterm())
        try:
            try:
                demo.launch(
                    server_name=host,
                    server_port=port,
                    max_file_size=max_file_size,
                    prevent_thread_lock=True,
                    ssr_mode=False,
                    show_error=False,
                    quiet=not block,
                    auth=list(auth) or None,
                    css=CSS,
                    js=JS,
                )
            except OSError as exc:
                raise InputError(
                    f"cannot serve the demo on {host}:{port} ({exc}): the port may be taken (choose another with --port) "
                    "or the address is not one of this machine's (check --host)"
                ) from None
            if ready is not None:
                ready()
            if not block:
                return demo
            assert stop is not None
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:  # Ctrl+C
            pass
        finally:
            if block:
                if app is not None:  # let a running model call stop at its next progress report
                    app.cancel_all()
                    if app.lock.acquire(timeout=SHUTDOWN_WAIT_S):
                        app.lock.release()
                demo.close()
                if app is not None:
                    app.close()
    return demo


def check_file_size(value: str | int | None) -> None:
    """Check an upload limit: bytes, or a number with a unit (``25mb``, ``1 GB``, ``500kb``).

    :raises InputError: anything else.
    """
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*(b|kb|mb|gb|tb)\s*", value, re.IGNORECASE):
        return
    raise InputError(f"the upload limit must be a size like 25mb, 500kb or 1gb, got {value!r} (--max-file-size)")

