"""Starting and stopping a real Label Studio for the tests (one start-up for every module that needs one).

``scripts/install-label-studio.sh`` (run by ``bin/test``) installs label-studio==1.23.2 into its own
virtualenv, ``$OVPANOPTIC_LABEL_STUDIO_VENV`` (default ``~/.cache/ovpanoptic/label-studio-1.23.2``).
Without it the tests that need it skip (in CI, ``CI=true``, they fail).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

VERSION = "1.23.2"
#: Seconds to wait for Label Studio's /health (about 30 s here, 70 s on a loaded machine; the first
#: start migrates its database).
START_TIMEOUT_S = 300


def venv() -> Path:
    """Label Studio's own virtualenv."""
    given = os.environ.get("OVPANOPTIC_LABEL_STUDIO_VENV")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ovpanoptic" / f"label-studio-{VERSION}"


def require_label_studio() -> Path:
    """The ``label-studio`` command; skips the test without it (fails it in CI)."""
    binary = venv() / "bin" / "label-studio"
    if not binary.exists():
        message = f"Label Studio is not installed at {binary}: run scripts/install-label-studio.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float, auth: tuple[str, str] | None = None) -> None:
    """Wait until ``url`` answers 200; fail with the log's tail when the process exits or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited with {process.returncode} before it answered; its log:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2, auth=auth).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)  # a poll interval, not a wait for a state: the loop waits for the answer
    pytest.fail(f"{url} did not answer within {timeout} s; log:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Terminate a server (kill it after 20 s)."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_label_studio(
    folder: Path, port: int, *, env: Mapping[str, str], username: str, password: str, extra: Sequence[str] = ()
) -> subprocess.Popen:
    """Start Label Studio on ``127.0.0.1:port`` and wait for its ``/health``.

    Its data folder is ``folder/ls-data``, its log ``folder/label-studio.log``, its working folder
    ``folder``; ``username``/``password`` make the test user, ``extra`` adds arguments (e.g.
    ``--user-token``). ``env`` is its whole environment (without this checkout's ``PYTHONPATH``).
    The caller stops it with :func:`stop`; a server that does not come up is stopped here.
    """
    binary = require_label_studio()
    log = folder / "label-studio.log"
    with log.open("w") as handle:
        process = subprocess.Popen(
            [str(binary), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(folder / "ls-data"),
             "--username", username, "--password", password, *extra],
            stdout=handle, stderr=subprocess.STDOUT, env={k: v for k, v in env.items() if k != "PYTHONPATH"}, cwd=folder,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", process, log, START_TIMEOUT_S)
    except BaseException:
        stop(process)
        raise
    return process
