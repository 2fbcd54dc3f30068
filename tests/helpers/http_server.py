"""A real HTTP file server on 127.0.0.1 (ephemeral port, background thread) for download tests.

It serves bytes the test made, from a dict of routes and/or a folder, speaks HTTP/1.1 with
single-range ``Range`` requests (206 + ``Content-Range``, 416 past the end), and can misbehave on
purpose, per path: fail the first N requests, cut the connection after K bytes, serve corrupted
bytes, ignore ``Range``, answer a fixed status, redirect, send extra headers, go slowly. Every
request is logged (method, path, headers, ``Range``, status, body bytes sent) so tests can count
requests and bytes.

Usage::

    from tests.helpers.http_server import FileServer

    with FileServer() as server:                       # or the ``http_server`` fixture
        url = server.add("/models/a.pth", data)        # -> "http://127.0.0.1:PORT/models/a.pth"
        server.add("/b.bin", data, fail_first=2)       # first 2 requests: HTTP 500
        server.add("/c.bin", data, cut_after=1000)     # 1st request: 1000 body bytes, then the socket closes
        server.add("/d.bin", data, corrupt=True)       # one byte flipped in every answer
        server.add("/e.bin", data, ignore_range=True)  # always 200 with the whole body
        server.add("/gone", b"", status=404)           # always 404
        server.add("/old", b"", redirect="/models/a.pth")  # 302 to another path
        ...
        server.count("/b.bin")                         # requests seen for that path (GET and HEAD)
        server.full_gets("/models/a.pth")              # GETs answered 200 whose whole body was sent
        server.ranges("/c.bin")                        # ["bytes=1000-"]: Range headers seen, in order
        server.bytes_sent("/c.bin")                    # body bytes written for that path
        server.requests                                # list[Request], every request in order

In a pytest module, import the fixtures to use them (pytest finds fixtures imported into a test
module)::

    from tests.helpers.fixtures import http_server, lavis_cache  # noqa: F401

``add`` options (keyword-only; ``server.configure(path, **options)`` changes them later):

- ``fail_first=N``, ``fail_status=500``: the first N requests for the path get ``fail_status``;
- ``status=CODE``: always answer CODE with an empty body (e.g. 404, 403);
- ``cut_after=K``, ``cut_times=1``, ``cut_mode="close"``: for the first ``cut_times`` requests
  (``None``: all), send K body bytes after announcing the full ``Content-Length``, then close the
  socket (``"close"``: orderly FIN, the client sees a short body; ``"reset"``: TCP RST);
- ``corrupt=True`` (every answer) or ``corrupt=N`` (the first N answers): serve the file with its
  middle byte flipped (size unchanged);
- ``ignore_range=True``: answer every GET with 200 and the whole file;
- ``content_length=False``: send no ``Content-Length`` (the body ends when the connection closes);
- ``delay=S``: sleep S seconds after sending the first half of the body (widens race windows);
- ``headers={...}``: extra response headers (``ETag``, ``X-Repo-Commit``, ...);
- ``redirect="/other"`` (or a full URL): answer 302 with that ``Location``;
- ``etag=True``: send a strong ``ETag`` (from the bytes served) and honour ``If-Range`` (a stale
  validator gets the whole file with 200); ``etag=False`` sends neither;
- ``on_request=fn``: ``fn(route, n)`` runs before the n-th request (1-based) for the path is
  answered; it may change the route (``route.data = new_bytes``, ...).

A path not added is looked up in ``root`` (a folder given to the constructor), else 404. Paths are
matched without the query string.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["FileServer", "Request", "Route"]


@dataclass
class Route:
    """What the server does for one path (see the module docstring for the options)."""

    data: bytes
    fail_first: int = 0
    fail_status: int = 500
    status: int | None = None
    cut_after: int | None = None
    cut_times: int | None = 1
    cut_mode: str = "close"
    corrupt: bool | int = False
    ignore_range: bool = False
    content_length: bool = True
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    redirect: str | None = None
    etag: bool = True
    on_request: Callable[[Route, int], None] | None = None
    # counters, updated by the server
    seen: int = 0
    cuts_done: int = 0
    corrupt_done: int = 0


@dataclass
class Request:
    """One request as the server saw and answered it."""

    method: str
    path: str
    headers: dict[str, str]
    range: str | None
    status: int = 0
    bytes_sent: int = 0
    complete: bool = False  # the whole announced body was sent


def _corrupted(data: bytes) -> bytes:
    if not data:
        return b"\x00"
    b = bytearray(data)
    b[len(b) // 2] ^= 0xFF
    return bytes(b)


def _parse_range(value: str | None, n: int) -> tuple[int, int] | None | str:
    """(start, end inclusive) for one ``bytes=`` range; None: ignore it; "unsatisfiable": 416."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[6:].strip().partition("-")
    try:
        if first == "":  # suffix: the last N bytes
            k = int(last)
            return (max(n - k, 0), n - 1) if k > 0 and n > 0 else "unsatisfiable"
        start = int(first)
        end = int(last) if last else n - 1
    except ValueError:
        return None
    if start >= n:
        return "unsatisfiable"
    return start, min(end, n - 1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        req = Request(self.command, path, dict(self.headers.items()), self.headers.get("Range"))
        owner._log(req)
        route = owner._route(path)
        if route is None:
            return self._empty(req, 404)
        with owner._lock:
            route.seen += 1
            nth = route.seen
        if route.on_request is not None:
            route.on_request(route, nth)
        if route.redirect is not None:
            return self._empty(req, 302, {"Location": route.redirect})
        if route.status is not None:
            return self._empty(req, route.status, route.headers)
        if nth <= route.fail_first:
            return self._empty(req, route.fail_status)
        data = route.data
        if body:
            with owner._lock:
                if route.corrupt is True or route.corrupt_done < int(route.corrupt):
                    route.corrupt_done += 1
                    data = _corrupted(data)
        n = len(data)
        status, start, end = 200, 0, n - 1
        headers = {"Accept-Ranges": "bytes", **route.headers}
        honour_range = not route.ignore_range
        if route.etag:
            etag = '"' + hashlib.sha256(route.data).hexdigest()[:20] + '"'
            headers["ETag"] = etag
            if_range = self.headers.get("If-Range")
            honour_range = honour_range and (if_range is None or if_range == etag)
        rng = _parse_range(req.range, n) if honour_range else None
        if rng == "unsatisfiable":
            return self._empty(req, 416, {"Content-Range": f"bytes */{n}"})
        if rng is not None:
            status, (start, end) = 206, rng
            headers["Content-Range"] = f"bytes {start}-{end}/{n}"
        payload = data[start:end + 1]
        cut = None
        if body and route.cut_after is not None:
            with owner._lock:
                if route.cut_times is None or route.cuts_done < route.cut_times:
                    route.cuts_done += 1
                    cut = route.cut_after
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        if route.content_length:
            self.send_header("Content-Length", str(len(payload)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        req.status = status
        if not body:
            req.complete = True
            return
        if cut is not None:
            payload = payload[:cut]
        try:
            half = len(payload) // 2
            for i, piece in enumerate((payload[:half], payload[half:])):
                self.wfile.write(piece)
                self.wfile.flush()
                req.bytes_sent += len(piece)
                if route.delay and i == 0:
                    time.sleep(route.delay)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if cut is not None:
            self._cut(route.cut_mode)
            return
        req.complete = True

    def _empty(self, req: Request, status: int, headers: dict[str, str] | None = None) -> None:
        req.status = status
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()
        req.complete = True

    def _cut(self, mode: str) -> None:
        self.close_connection = True
        try:
            if mode == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FileServer


class FileServer:
    """An HTTP server on 127.0.0.1 serving test-made files, with per-path misbehaviour and a request log."""

    def __init__(self, files: dict[str, bytes] | None = None, root: str | Path | None = None):
        self.root = Path(root) if root is not None else None
        self.requests: list[Request] = []
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        for path, data in (files or {}).items():
            self.add(path, data)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FileServer:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-file-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start the server first"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # -- routes ------------------------------------------------------------------------------
    def add(self, path: str, data: bytes = b"", **options: Any) -> str:
        """Serve ``data`` at ``path`` with the given misbehaviour options; returns its URL (the path
        itself while the server is not started)."""
        path = "/" + path.lstrip("/")
        with self._lock:
            self._routes[path] = Route(data=bytes(data), **options)
        return self.url(path) if self._httpd is not None else path

    def configure(self, path: str, **options: Any) -> None:
        """Change options of an added path (counters are kept)."""
        route = self._routes["/" + path.lstrip("/")]
        with self._lock:
            for k, v in options.items():
                if not hasattr(route, k):
                    raise TypeError(f"unknown route option {k!r}")
                setattr(route, k, v)

    def _route(self, path: str) -> Route | None:
        with self._lock:
            route = self._routes.get(path)
        if route is None and self.root is not None:
            f = (self.root / path.lstrip("/")).resolve()
            if f.is_file() and f.is_relative_to(self.root.resolve()):
                with self._lock:
                    route = self._routes.setdefault(path, Route(data=f.read_bytes()))
        return route

    def _log(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    # -- what happened -----------------------------------------------------------------------
    def _select(self, path: str | None, method: str | None) -> list[Request]:
        p = None if path is None else "/" + path.lstrip("/")
        with self._lock:
            return [r for r in self.requests if (p is None or r.path == p) and (method is None or r.method == method)]

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """Requests seen (for ``path`` and ``method`` when given)."""
        return len(self._select(path, method))

    def full_gets(self, path: str | None = None) -> int:
        """GETs answered 200 whose whole body was sent (how many times the full file went out)."""
        return sum(1 for r in self._select(path, "GET") if r.status == 200 and r.complete)

    def ranges(self, path: str | None = None) -> list[str | None]:
        """The ``Range`` header of every GET, in order (None where there was none)."""
        return [r.range for r in self._select(path, "GET")]

    def bytes_sent(self, path: str | None = None) -> int:
        """Body bytes written (for ``path`` when given)."""
        return sum(r.bytes_sent for r in self._select(path, None))

    def reset_log(self) -> None:
        """Forget logged requests and the per-route counters (fail_first etc. start over)."""
        with self._lock:
            self.requests.clear()
            for r in self._routes.values():
                r.seen = r.cuts_done = r.corrupt_done = 0
