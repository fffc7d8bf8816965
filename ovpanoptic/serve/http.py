"""The HTTP server of :mod:`ovpanoptic.serve`: standard library ``ThreadingHTTPServer``, JSON in and out.

Every answer is JSON. Refusals are 4xx with ``{"error": message}``: 401 (Basic authentication
missing or wrong, when configured), 404 (no such endpoint), 405 (wrong method), 411 (a POST without
``Content-Length``), 413 (a body over ``max_request_bytes``, refused before it is read); http.server's
own refusals (400 a malformed request line, 414, 431, 501 an unknown method) are JSON too. An
unexpected failure is a 500 whose message says to read the server log; the traceback goes to the
log (``logging``), never to the client.

Concurrency: each connection gets its own thread, and the listening socket queues up to
:data:`LISTEN_BACKLOG` connections that arrive at once, so a burst of clients is answered rather
than reset (work that needs the model still runs one request at a time, in the handler).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..errors import InputError

__all__ = ["Handler", "Reply", "ServeOptions", "check_exposure", "make_server"]

log = logging.getLogger(__name__)

#: Hosts that only this machine can reach.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

#: Connections the listening socket holds while every thread is busy accepting (the listen
#: backlog). socketserver's default of 5 made the kernel drop clients of a burst (20 concurrent
#: ``/predict`` requests: 5 "connection reset"); each connection is then served by its own thread.
LISTEN_BACKLOG: int = 128


class _Server(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a listen backlog of :data:`LISTEN_BACKLOG` and daemon threads."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True


@dataclass(frozen=True)
class Reply:
    """An answer: HTTP status and a JSON-ready body."""

    status: int
    body: dict[str, Any]


class Handler(Protocol):
    """What the server serves: ``handle(method, path, body) -> Reply`` (path without the query)."""

    def handle(self, method: str, path: str, body: bytes) -> Reply: ...


@dataclass(frozen=True)
class ServeOptions:
    """Where and how the server listens.

    :param host: the address to bind (``127.0.0.1``: this machine only).
    :param port: the TCP port (0: any free port).
    :param basic_auth: ``(user, password)`` that every request must carry (HTTP Basic, as Label
        Studio's ML backend settings send it), or ``None``.
    :param max_request_bytes: largest request body accepted, in bytes.
    :param no_auth: serve an address other than loopback without ``basic_auth`` (refused otherwise).
    :param idle_timeout_s: seconds a connection may stay silent while sending its request.
    :raises ValueError: an empty user or password, a port outside 0..65535, a limit below 1 KiB.
    """

    host: str = "127.0.0.1"
    port: int = 9090
    basic_auth: tuple[str, str] | None = None
    max_request_bytes: int = 16 * 1024 * 1024
    no_auth: bool = False
    idle_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_request_bytes < 1024:
            raise ValueError(f"the request size limit must be at least 1 KiB, got {self.max_request_bytes} bytes")
        if self.basic_auth is not None and (not self.basic_auth[0] or not self.basic_auth[1] or ":" in self.basic_auth[0]):
            raise ValueError("basic auth needs USER:PASSWORD with a non-empty user (no ':') and password")
        if self.basic_auth is not None and self.no_auth:
            raise ValueError("--basic-auth and --no-auth contradict each other: give one")
        if not self.idle_timeout_s > 0:
            raise ValueError(f"the idle timeout must be a positive number of seconds, got {self.idle_timeout_s}")


def _authorised(header: str | None, expected: tuple[str, str]) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Both compared in constant time, whatever the first gives.
    return hmac.compare_digest(user.encode(), expected[0].encode()) & hmac.compare_digest(password.encode(), expected[1].encode())


def _request_handler(handler: Handler, options: ServeOptions) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        server_version = "ovpanoptic"
        sys_version = ""
        #: Seconds a connection may stay silent (a client that sends its request slowly, or never,
        #: is dropped instead of holding a thread for ever).
        timeout = options.idle_timeout_s

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _send(self, reply: Reply, *, with_body: bool = True) -> None:
            data = json.dumps(reply.body).encode("utf-8")
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if reply.status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="ovpanoptic"')
            self.end_headers()
            if with_body:
                self.wfile.write(data)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own refusals (a malformed request line, a URI or header too long, a
            method without ``do_*``) in JSON too, instead of its HTML page."""
            self.close_connection = True
            text = message or self.responses.get(code, ("error",))[0]
            self._send(Reply(code, {"error": text}), with_body=self.command != "HEAD" and code >= 200 and code not in (204, 304))

        def _serve(self, method: str) -> None:
            path = urlsplit(self.path).path
            if options.basic_auth is not None and not _authorised(self.headers.get("Authorization"), options.basic_auth):
                self._send(Reply(401, {"error": "authentication required: send HTTP Basic credentials (Label Studio: "
                                                 "the ML backend's 'Basic auth' user and password)"}))
                return
            body = b""
            if method == "POST":
                length_text = self.headers.get("Content-Length")
                if length_text is None:
                    self._send(Reply(411, {"error": "a POST needs a Content-Length header"}))
                    return
                try:
                    length = int(length_text)
                    if length < 0:
                        raise ValueError(length)
                except ValueError:
                    self._send(Reply(400, {"error": f"Content-Length {length_text!r} is not a number of bytes"}))
                    return
                if length > options.max_request_bytes:
                    self.close_connection = True
                    self._send(Reply(413, {"error": f"the request body is {length} bytes; the limit is "
                                                     f"{options.max_request_bytes} (raise it with --max-request-mb)"}))
                    return
                body = self.rfile.read(length)
            try:
                reply = handler.handle(method, path, body)
            except Exception:  # the server must answer; the traceback goes to the log
                log.exception("%s %s failed", method, path)
                reply = Reply(500, {"error": "internal error: the request failed in the server; its log has the details"})
            self._send(reply)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _not_allowed(self) -> None:
            self.close_connection = True  # its body, if any, is not read
            self._send(Reply(405, {"error": f"method {self.command} is not allowed: use GET or POST"}), with_body=self.command != "HEAD")

        do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    return RequestHandler


def check_exposure(options: ServeOptions) -> None:
    """Refuse a host other than loopback without ``basic_auth`` and without ``no_auth``.

    :raises InputError: saying how to add authentication.
    """
    if options.host not in LOOPBACK_HOSTS and options.basic_auth is None and not options.no_auth:
        raise InputError(
            f"refusing to serve on {options.host} without authentication: anyone who can reach this machine could run "
            "the models. Add --basic-auth USER:PASSWORD (and the same user and password in Label Studio's ML backend "
            "settings), or --no-auth if that is what you want"
        )


def make_server(handler: Handler, options: ServeOptions, *, on_bind: Callable[[str, int], None] | None = None) -> ThreadingHTTPServer:
    """A server (not yet serving: call ``serve_forever()``) bound to ``options.host:options.port``.

    :raises InputError: a host other than loopback without ``basic_auth`` and without ``no_auth``
        (anyone who can reach the port could run the models and read what they are sent).
    :raises OSError: the address cannot be bound (in use, not an address of this machine).
    """
    check_exposure(options)
    server = _Server((options.host, options.port), _request_handler(handler, options))
    if on_bind is not None:
        host, port = server.server_address[:2]
        on_bind(str(host), int(port))
    return server
