"""A loopback HTTP file server with fault injection, for the fetch tests (no internet needed).

Usage:
    with FileServer() as server:
        url = server.add("/a/b.pth", data, drop_after=1000)
        ...
        server.requests_for("/a/b.pth")  # what the client asked for, in order

It listens on 127.0.0.1 on a free port, serves each request on its own thread and shuts itself
down after `lifetime_s` even if a test forgets to (so a hung test cannot keep it alive).
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    data: bytes
    range_support: bool = True
    # Close the connection after this many body bytes, on the first `drop_times` answers.
    drop_after: int | None = None
    drop_times: int = 1
    # Status codes answered (with a short body) before the file is served, one per request.
    statuses_first: list[int] = field(default_factory=list)
    # When set, every request gets this status (404, 410, 403, ...).
    always_status: int | None = None
    send_length: bool = True
    served: int = 0  # answers with the file so far


@dataclass
class RequestRecord:
    method: str
    path: str
    range: str | None
    status: int

    @property
    def range_start(self) -> int | None:
        match = re.match(r"bytes=(\d+)-", self.range or "")
        return int(match.group(1)) if match else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._answer(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        range_header = self.headers.get("Range")
        with owner.lock:
            route = owner.routes.get(path)
            if route is None:
                status = 404
            elif route.always_status is not None:
                status = route.always_status
            elif route.statuses_first:
                status = route.statuses_first.pop(0)
            else:
                status = 0  # decided below
        if status:
            owner.record(RequestRecord(self.command, path, range_header, status))
            body = f"status {status}\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if send_body:
                self.wfile.write(body)
            return

        data = route.data
        start = 0
        match = re.match(r"bytes=(\d+)-$", range_header or "")
        if route.range_support and match:
            start = int(match.group(1))
            if start >= len(data):
                owner.record(RequestRecord(self.command, path, range_header, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        else:
            status = 200
        owner.record(RequestRecord(self.command, path, range_header, status))
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if route.send_length:
            self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if route.range_support:
            self.send_header("Accept-Ranges", "bytes")
        self.send_header("Connection", "close")
        self.end_headers()
        if not send_body:
            return
        with owner.lock:
            route.served += 1
            drop = route.drop_after is not None and route.served <= route.drop_times
        if drop:
            self.wfile.write(body[: route.drop_after])
            self.wfile.flush()
            # FIN after the bytes (no RST), so the client really receives drop_after bytes.
            self.connection.shutdown(socket.SHUT_WR)
            self.close_connection = True
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FileServer


class FileServer:
    def __init__(self, lifetime_s: float = 120.0):
        self.routes: dict[str, Route] = {}
        self.log: list[RequestRecord] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._server.timeout = 5
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._watchdog = threading.Timer(lifetime_s, self.stop)
        self._watchdog.daemon = True
        self._stopped = False

    # -- lifecycle
    def start(self) -> FileServer:
        self._thread.start()
        self._watchdog.start()
        return self

    def stop(self) -> None:
        with self.lock:
            if self._stopped:
                return
            self._stopped = True
        self._watchdog.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- content
    def add(self, path: str, data: bytes, **faults) -> str:
        if not path.startswith("/"):
            path = "/" + path
        with self.lock:
            self.routes[path] = Route(data=data, **faults)
        return self.base_url + path

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def record(self, entry: RequestRecord) -> None:
        with self.lock:
            self.log.append(entry)

    def requests_for(self, path: str) -> list[RequestRecord]:
        with self.lock:
            return [r for r in self.log if r.path == path]


def unused_port() -> int:
    """A local port nothing listens on (for 'connection refused' cases)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
