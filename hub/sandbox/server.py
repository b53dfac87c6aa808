"""Serve sandboxes over real HTTP on localhost, one port per vendor, the vendor's paths at the root.

Built on the standard library's ``ThreadingHTTPServer`` (one thread per connection, HTTP/1.1 keep-alive,
responses always sent with ``Content-Length``, never chunked). Each raw request becomes an ``httpx.Request``
for the :class:`~hub.sandbox.control.Sandbox`, and its ``httpx.Response`` is written back. Servers run in
background threads, so tests and ``hub demo`` use them in-process::

    with SandboxServers({"hubspot": sandbox}) as servers:
        client = httpx.Client(base_url=servers.base_urls["hubspot"])
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

from hub.sandbox.control import Hang, Sandbox

logger = logging.getLogger(__name__)

# Hop-by-hop and framing headers: the server frames the body itself.
_SKIP_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}
)
_MAX_BODY = 256 * 1024 * 1024


class _Server(ThreadingHTTPServer):
    """A threaded HTTP server for one sandbox that can drop its open connections on stop."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        super().__init__(address, _Handler)
        self.sandbox = sandbox
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is ordinary here: one debug line, no traceback
        on stderr; anything else is logged with its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.debug("%s: client %s went away: %s", self.sandbox.vendor, client_address, error)
            return
        logger.exception("%s: error serving %s", self.sandbox.vendor, client_address)

    def drop_connections(self) -> None:
        """Close every open (keep-alive or hung) connection, so no handler outlives the server."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.send_error(400, str(exc))
            self.close_connection = True
            return
        host, port = self.server.server_address[:2]
        request = httpx.Request(
            self.command,
            f"http://{_host_for_url(str(host))}:{port}{self.path}",
            headers=list(self.headers.items()),
            content=body,
        )
        result = self.server.sandbox.dispatch(request)
        if isinstance(result, Hang):
            # Wait past the client's read timeout (or until the server stops), then drop the connection.
            self.server.stopping.wait(result.delay)
            self.close_connection = True
            return
        self._write(result)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > _MAX_BODY:
            raise ValueError(f"bad Content-Length {length}")
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            total += size
            if total > _MAX_BODY:
                raise ValueError("chunked body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _write(self, response: httpx.Response) -> None:
        content = response.content
        self.send_response(response.status_code, response.reason_phrase)
        for name, value in response.headers.multi_items():
            if name.lower() not in _SKIP_RESPONSE_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD" and content:
            self.wfile.write(content)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.server.sandbox.vendor, format % args)


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class SandboxServer:
    """One sandbox served on ``host:port`` (port 0: a free port) from a background thread.

    Args:
        sandbox: the sandbox to serve.
        host: the interface (keep it on loopback).
        port: the port; 0 picks a free one.
    """

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sandbox = sandbox
        self._server = _Server((host, port), sandbox)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        host, port = self._server.server_address[:2]
        return f"http://{_host_for_url(str(host))}:{port}"

    def start(self) -> str:
        """Start serving in a daemon thread; returns the base URL."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"sandbox-{self.sandbox.vendor}",
                daemon=True,
            )
            self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving, wake hung requests and close every connection."""
        self._server.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.drop_connections()
        self._server.server_close()


class SandboxServers:
    """Several sandboxes, each on its own port; a context manager that starts and stops them all.

    Args:
        sandboxes: sandboxes by vendor name.
        host: the interface (keep it on loopback).
        port: 0 for free ports; otherwise the first port, the next vendors getting the following ones (in the
            mapping's order).
    """

    def __init__(self, sandboxes: Mapping[str, Sandbox], host: str = "127.0.0.1", port: int = 0) -> None:
        self._servers: dict[str, SandboxServer] = {}
        try:
            for i, (vendor, sandbox) in enumerate(sandboxes.items()):
                self._servers[vendor] = SandboxServer(sandbox, host, port + i if port else 0)
        except OSError:
            self.stop()
            raise

    @property
    def sandboxes(self) -> dict[str, Sandbox]:
        """The sandboxes by vendor (their in-process control API: stats, faults, mutations)."""
        return {vendor: server.sandbox for vendor, server in self._servers.items()}

    @property
    def base_urls(self) -> dict[str, str]:
        """Base URLs by vendor."""
        return {vendor: server.base_url for vendor, server in self._servers.items()}

    def start(self) -> dict[str, str]:
        """Start every server; returns the base URLs by vendor."""
        for server in self._servers.values():
            server.start()
        return self.base_urls

    def stop(self) -> None:
        """Stop every server."""
        for server in self._servers.values():
            server.stop()

    def __enter__(self) -> SandboxServers:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
