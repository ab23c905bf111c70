"""Decisions out: a PUB socket (topic ``decision``) and an append-only JSON Lines log.

One message per closed trial, published first (the hot path) and then appended to the log,
handed to the OS per trial, so a crash loses nothing already decided. A log that stops taking
writes (a full disk) never stops the publishing: see :class:`~rtdecode.decision_log.DecisionLog`.
Every decision carries its run's ``run_id`` (also in the log's ``start`` and ``stop`` records);
sequence numbers start at 1 in each run and never skip, so a client can detect drops, and a
restarted daemon by its new ``run_id``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import zmq

from rtdecode.curve import CurveKeys, make_server
from rtdecode.decision_log import DecisionLog
from rtdecode.errors import RtdecodeError

TOPIC = b"decision"


class DecisionPublisher:
    def __init__(
        self,
        address: str,
        log_path: Path | None,
        context: zmq.Context | None = None,
        run_id: str = "",
        curve_server: CurveKeys | None = None,
        on_log_change: Callable[[str], None] | None = None,
    ) -> None:
        self.log_path = Path(log_path) if log_path else None
        # a bad path fails before binding; past its start the log never raises (see DecisionLog)
        self._log = DecisionLog(self.log_path, tolerant=True, on_change=on_log_change) if self.log_path else None
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PUB)
        if curve_server is not None:
            make_server(self.sock, curve_server)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.SNDHWM, 10000)
        try:
            self.sock.bind(address)
        except zmq.ZMQError as err:
            self.sock.close()
            if self._log:
                self._log.close()
            raise RtdecodeError(
                f"cannot bind the decision socket {address}: {err} (another daemon running? "
                "choose another outputs.decision_port in the rig config)"
            ) from None
        self.address = address
        self.run_id = run_id
        self.seq = 0

    def publish(self, decision: dict) -> dict:
        self.seq += 1
        decision = {"run_id": self.run_id, "seq": self.seq, **decision}
        t = time.monotonic_ns()
        decision.setdefault("latency_ns", {})["published"] = t
        line = json.dumps(decision, separators=(",", ":"))
        self.sock.send_multipart([TOPIC, line.encode()])
        if self._log:
            self._log.write_line(line)
        return decision

    def log_event(self, event: dict, strict: bool = False) -> None:
        """Non-decision records (start, stop, provenance) go to the log only. ``strict``: a log that
        cannot take it raises :class:`RtdecodeError` (the start record: the daemon refuses to run)."""
        if self._log:
            self._log.write(event, strict)

    def retry_log(self) -> None:
        """Write what a failing log kept in memory, if it can take it now (cheap when nothing is kept)."""
        if self._log and self._log.unlogged:
            self._log.retry()

    def flush_log(self, wait_s: float = 0.0) -> None:
        if self._log:
            self._log.flush(wait_s)

    def log_health(self) -> dict | None:
        return self._log.health() if self._log else None

    def close(self) -> None:
        if self._log:
            self._log.close()
        self.sock.close()
