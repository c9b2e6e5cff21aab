"""A real HTTP server on 127.0.0.1 for URL-source tests, with routes for each behaviour under test."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "text/csv"  # None: no Content-Type header at all
    headers: dict[str, str] = field(default_factory=dict)  # sent as given (a Content-Length here replaces ours)
    delay: float = 0.0
    require: tuple[str, str] | None = None  # (header, value) the request must carry, else 401
    trickle: float = 0.0  # seconds between single bytes of the body: no read ever waits long enough to time out
    trickle_headers: bool = False  # trickle the status line and headers too (with trickle's pace)


class _Handler(BaseHTTPRequestHandler):
    routes: dict[str, Route]
    hits: Counter[str]
    seen: dict[str, list[dict[str, str]]]

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.hits[path] += 1
        self.seen.setdefault(path, []).append(dict(self.headers.items()))
        route = self.routes.get(path, Route(404, b"not found", "text/plain"))
        if route.require and self.headers.get(route.require[0]) != route.require[1]:
            route = Route(401, b"unauthorized", "text/plain")
        if route.delay:
            time.sleep(route.delay)
        try:
            self._send(self._head(route), route.trickle if route.trickle_headers else 0.0)
            self._send(route.body, route.trickle)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as some tests expect it to

    def _head(self, route: Route) -> bytes:
        """Status line and headers, written by hand so that they can be trickled too."""
        reason = self.responses.get(route.status, ("",))[0]
        headers = {"Content-Type": route.content_type, "Content-Length": str(len(route.body)), **route.headers}
        if route.content_type is None:
            del headers["Content-Type"]
        lines = [f"HTTP/1.0 {route.status} {reason}", *(f"{key}: {value}" for key, value in headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send(self, data: bytes, trickle: float) -> None:
        if not trickle:
            self.wfile.write(data)
            return
        for index in range(len(data)):
            self.wfile.write(data[index:index + 1])
            time.sleep(trickle)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class LocalServer:
    base: str
    routes: dict[str, Route]
    hits: Counter[str]
    seen: dict[str, list[dict[str, str]]]  # request headers per path

    def url(self, path: str) -> str:
        return self.base + path


@contextmanager
def http_server() -> Iterator[LocalServer]:
    """Serves on 127.0.0.1 on a free port from a thread; stopped on exit."""
    routes: dict[str, Route] = {}
    hits: Counter[str] = Counter()
    seen: dict[str, list[dict[str, str]]] = {}
    handler = type("Handler", (_Handler,), {"routes": routes, "hits": hits, "seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalServer(f"http://127.0.0.1:{server.server_address[1]}", routes, hits, seen)
    finally:
        server.shutdown()
        server.server_close()
