"""``rtdecode dashboard``: the live page, served from a process of its own.

A standard-library HTTP server (threads, no framework: three routes, loopback) serves

- ``/``: the page (``page.html`` beside this module), which asks ``/api/state`` twice a second and
  draws it with Plotly.js;
- ``/plotly.min.js``: Plotly.js from the ``plotly`` package's own copy, so the page needs no
  network (rigs are often offline);
- ``/api/state``: :meth:`~rtdecode.dashboard.feed.DashboardFeed.snapshot` as JSON.

Plotly.js because it is a maintained, widely used charting library that redraws a figure in place
from plain JSON (``Plotly.react``) -- all a live page polling a snapshot needs -- and ships inside a
PyPI wheel; Bokeh or Panel would add a server of their own beside the daemon's sockets.

The page has no authentication, so it binds to loopback unless ``allow_remote`` (as the daemon's
sockets need CURVE to leave loopback, the page needs the operator to say so).
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from rtdecode.dashboard.feed import DashboardFeed
from rtdecode.errors import RtdecodeError

PAGE = Path(__file__).with_name("page.html")


@cache
def plotly_js() -> bytes:
    try:
        from plotly.offline import get_plotlyjs
    except ImportError as err:
        raise RtdecodeError(f"the dashboard draws with Plotly.js from the plotly package: {err}") from None
    return get_plotlyjs().encode()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class DashboardServer:
    def __init__(self, feed: DashboardFeed, host: str = "127.0.0.1", port: int = 8050, allow_remote: bool = False):
        if not _is_loopback(host) and not allow_remote:
            raise RtdecodeError(
                f"dashboard host {host!r} is not a loopback address: the page has no authentication; "
                "pass --allow-remote to serve it there anyway (or tunnel: ssh -L)"
            )
        self.feed = feed
        page, js = PAGE.read_bytes(), plotly_js()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                path = self.path.split("?", 1)[0]
                if path == "/":
                    self._send(200, "text/html; charset=utf-8", page)
                elif path == "/plotly.min.js":
                    self._send(200, "application/javascript", js, cache=True)
                elif path == "/api/state":
                    body = json.dumps(_finite(feed.snapshot()), allow_nan=False).encode()
                    self._send(200, "application/json", body)
                else:
                    self._send(404, "text/plain", f"no such page: {path}".encode())

            def _send(self, code: int, kind: str, body: bytes, cache: bool = False) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # requests are not worth a line each
                pass

        try:
            self.http = ThreadingHTTPServer((host, port), Handler)
        except OSError as err:
            raise RtdecodeError(f"cannot serve the dashboard on {host}:{port}: {err}") from None
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, name="dashboard-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.http.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> DashboardServer:
        self.feed.start()
        self.thread.start()
        return self

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.feed.stop()


def _finite(x):
    """NaN and infinities as null: the browser's JSON.parse takes nothing else."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x
