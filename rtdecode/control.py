"""The daemon's control protocol: parse any request bytes into a command, or an error to reply.

Requests are one frame of JSON ``{"cmd": "status" | "image" | "stop"}`` (``image``: the latest
trial's neural image and the mean image per called class, downsampled, for the dashboard).
Whatever arrives instead -- several frames, binary garbage, a huge or deeply nested document, JSON
of another shape -- gets an error reply naming what was expected; nothing here raises, so the
control thread never dies.
"""

from __future__ import annotations

import json

COMMANDS = ("status", "image", "stop")
#: Larger requests are answered with an error naming this limit (a real request is ~20 bytes).
MAX_REQUEST_BYTES = 4096
#: The REP socket's ``MAXMSGSIZE``: what libzmq reads at all. Beyond it a message cannot be answered
#: (libzmq drops the connection), so it sits far above any request a client could mean to send.
MAX_RECEIVED_BYTES = 1 << 20
EXPECTED = 'expected one frame of JSON {"cmd": "status"}, {"cmd": "image"} or {"cmd": "stop"}'


def parse_request(frames: list[bytes]) -> tuple[str | None, str | None]:
    """``(command, None)`` for a valid request, else ``(None, error message)``."""
    if len(frames) != 1:
        return None, f"{len(frames)} frames; {EXPECTED}"
    raw = frames[0]
    if len(raw) > MAX_REQUEST_BYTES:
        return None, f"request of {len(raw)} bytes, more than {MAX_REQUEST_BYTES}; {EXPECTED}"
    try:
        req = json.loads(raw)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, nesting
        return None, f"not JSON ({type(err).__name__}); {EXPECTED}"
    if not isinstance(req, dict):
        return None, f"a JSON {type(req).__name__}; {EXPECTED}"
    cmd = req.get("cmd")
    if cmd not in COMMANDS:
        shown = repr(cmd)[:40]
        return None, f"unknown command {shown}; {EXPECTED}"
    return cmd, None
