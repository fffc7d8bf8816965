"""Stopping a server cleanly on SIGTERM and SIGHUP, as on Ctrl+C (the demo, ``serve``).

Core leaf module: the standard library only.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["STOP_SIGNALS", "stop_on_sigterm"]

#: Signals that stop a served demo or backend like Ctrl+C (SIGHUP: the terminal or SSH session closed).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[threading.Event]:
    """Within the block, SIGTERM and SIGHUP (a closed terminal or SSH session) set the event it
    yields instead of killing the process, so whoever waits on it shuts down cleanly and the
    temporary folder is removed (nothing is raised in the middle of other code). Outside the main
    thread, signals cannot be handled: the event is never set by one."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
