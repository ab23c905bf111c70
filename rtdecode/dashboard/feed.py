"""What the dashboard shows, gathered from the daemon's public feeds in a process of its own.

:class:`DashboardFeed` subscribes to the decision PUB socket (as any rig program does, through
:class:`~rtdecode.client.DecisionClient`) and asks the control socket for ``status`` once per
``status_every_s``; it never touches the daemon otherwise, so it cannot slow the decoding path.
It keeps a bounded history (the latest ``keep`` decisions, the latest status) and turns it into one
JSON-ready :meth:`snapshot`: the stream, the units' firing rates (spikes per second of stream
between two statuses), the decisions, latency per stage, the latest trial's neural image beside the
mean image of its class (asked for with the control command ``image``, off the decoding path), and
accuracy so far against a stimulus log when one is given. A daemon that stops answering, restarts
(a new ``run_id``) or whose stream pauses is said so in the snapshot, and the feed goes on with the next answer.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from rtdecode.client import DecisionClient, control_request
from rtdecode.pipeline import LATENCY_STAGES
from rtdecode.scoring import wilson_interval

#: Latency histogram bins (ms), shared by every stage so they can be drawn together.
LATENCY_BINS_MS = np.concatenate([np.arange(0, 10, 0.25), np.arange(10, 50, 2.5), [50, 100, 1e9]])


class DashboardFeed:
    def __init__(
        self,
        decision_address: str,
        control_address: str,
        curve=None,
        labels: dict[int, str] | None = None,
        keep: int = 2000,
        status_every_s: float = 1.0,
    ) -> None:
        self.decision_address = decision_address
        self.control_address = control_address
        self.curve = curve
        self.labels = labels
        self.status_every_s = float(status_every_s)
        self.decisions: deque[dict] = deque(maxlen=keep)
        self.decisions_seen = 0
        self.status: dict | None = None
        self.status_at: float | None = None  # monotonic time of the latest answer
        self.status_error: str | None = None
        self.images: dict | None = None  # the daemon's answer to "image": latest and class-mean images
        self.started = time.monotonic()
        self.run_ids: list[str] = []  # in order of first appearance: restarts of the daemon
        self.unit_rates_hz: list[float] | None = None
        self._prev_units: tuple[np.ndarray, float] | None = None  # (spikes per unit, stream s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._listen, name="dashboard-decisions", daemon=True),
            threading.Thread(target=self._poll, name="dashboard-status", daemon=True),
        ]
        self.client: DecisionClient | None = None

    # -- life ---------------------------------------------------------------------------------------
    def start(self) -> DashboardFeed:
        self.client = DecisionClient(self.decision_address, curve=self.curve)
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        if self.client is not None:
            self.client.close()

    def _listen(self) -> None:
        while not self._stop.is_set():
            d = self.client.poll(200)
            if d is None:
                continue
            with self._lock:
                self.decisions.append(d)
                self.decisions_seen += 1
                run = d.get("run_id")
                if run and run not in self.run_ids:
                    self.run_ids.append(run)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                st = control_request(self.control_address, "status", timeout_s=2.0, curve=self.curve)
            except Exception as err:  # no daemon (yet, or any more): say so and keep asking
                with self._lock:
                    self.status_error = f"{type(err).__name__}: {err}"
            else:
                self._take_status(st)
                try:
                    images = control_request(self.control_address, "image", timeout_s=2.0, curve=self.curve)
                except Exception:  # an older daemon, or gone since the status: keep the last pictures
                    images = None
                if images is not None and "error" not in images:
                    with self._lock:
                        self.images = images
            self._stop.wait(self.status_every_s)

    def _take_status(self, st: dict) -> None:
        units = st.get("units") or {}
        spikes = np.asarray(units.get("spikes", []), dtype=np.float64)
        stream_s = float(units.get("stream_s", 0.0))
        with self._lock:
            prev = self._prev_units
            if prev is not None and len(prev[0]) == len(spikes) and stream_s > prev[1]:
                self.unit_rates_hz = ((spikes - prev[0]) / (stream_s - prev[1])).tolist()
            elif prev is not None and stream_s < prev[1]:  # a restarted daemon counts from 0
                self.unit_rates_hz = None
            if prev is None or stream_s != prev[1]:
                self._prev_units = (spikes, stream_s)
            self.status, self.status_at, self.status_error = st, time.monotonic(), None

    # -- what the page draws ------------------------------------------------------------------------
    def snapshot(self, max_decisions: int = 500) -> dict:
        with self._lock:
            decisions = list(self.decisions)
            st, at, err = self.status, self.status_at, self.status_error
            seen, runs, rates, images = self.decisions_seen, list(self.run_ids), self.unit_rates_hz, self.images
        now = time.monotonic()
        answering = at is not None and now - at < 3 * self.status_every_s + 2
        return {
            "daemon": {
                "answering": answering,
                "last_answer_s_ago": None if at is None else now - at,
                "error": err,
                "run_ids": runs,
                "restarts_seen": max(0, len(runs) - 1),
            },
            "stream": _stream(st),
            "units": {"rate_hz": rates},
            "decisions": {
                "seen": seen,
                "dropped": self.client.dropped if self.client is not None else 0,
                "recent": [_row(d) for d in decisions[-max_decisions:]],
                "by_status": _by_status(decisions),
            },
            "latency": _latency(decisions),
            "accuracy": _accuracy(decisions, self.labels),
            "images": images,
        }


def _stream(st: dict | None) -> dict | None:
    if st is None:
        return None
    c, r, s = st.get("counters", {}), st.get("receiver", {}), st.get("stream", {})
    gaps = st.get("gaps", {})
    return {
        "state": st.get("state"),
        "unfit": st.get("stream_unfit"),
        "protocol": s.get("protocol"),
        "stream_name": s.get("stream_name"),
        "channels": s.get("channel_count"),
        "sample_rate": s.get("sample_rate"),
        "run_id": st.get("run_id"),
        "blocks": c.get("blocks"),
        "onsets": c.get("onsets"),
        "decisions": c.get("decisions"),
        "degraded": c.get("degraded"),
        "gaps": gaps.get("count"),
        "lost_s": gaps.get("lost_s"),
        "lost_messages": c.get("lost_messages"),
        "overruns": c.get("overruns"),
        "receiver_cpu_per_stream_s": r.get("cpu_per_stream_s"),
        "ring_fill": r.get("ring_fill"),
        "ring_slots": r.get("ring_slots"),
        "stream_s": st.get("capacity", {}).get("stream_s"),
        "realtime_factor": st.get("capacity", {}).get("realtime_factor"),
        "motion_um": (st.get("motion") or {}).get("displacement_um"),
        "motion_tracking": (st.get("motion") or {}).get("tracking"),
    }


def _row(d: dict) -> dict:
    fs = d.get("sample_rate") or 30000.0
    p = d.get("probabilities") or {}
    return {
        "seq": d.get("seq"),
        "run_id": d.get("run_id"),
        "onset_s": d["onset_sample"] / fs,
        "onset_sample": d["onset_sample"],
        "class": d.get("predicted_class"),
        "p_natural": p.get("natural"),
        "status": d.get("status"),
        "reasons": d.get("reasons") or [],
    }


def _by_status(decisions: list[dict]) -> dict:
    out: dict[str, int] = {}
    for d in decisions:
        out[d["status"]] = out.get(d["status"], 0) + 1
    return out


def _latency(decisions: list[dict]) -> dict:
    ok = [d["latency_ns"] for d in decisions if d.get("status") == "ok" and d.get("latency_ns")]
    out = {"bins_ms": LATENCY_BINS_MS[:-1].tolist(), "stages": {}}
    for stage, (a, b) in LATENCY_STAGES.items():
        v = np.array([(lat[b] - lat[a]) / 1e6 for lat in ok if lat.get(a) and lat.get(b)], dtype=np.float64)
        if not len(v):
            continue
        counts, _ = np.histogram(v, LATENCY_BINS_MS)
        out["stages"][stage] = {
            "p50_ms": float(np.percentile(v, 50)),
            "p99_ms": float(np.percentile(v, 99)),
            "n": len(v),
            "counts": counts.tolist(),
        }
    return out


def _accuracy(decisions: list[dict], labels: dict[int, str] | None) -> dict | None:
    if labels is None:
        return None
    scored = [
        (d["predicted_class"] == labels[d["onset_sample"]])
        for d in decisions
        if d.get("status") == "ok" and labels.get(d["onset_sample"]) in ("natural", "artificial")
    ]
    k, n = int(sum(scored)), len(scored)
    lo, hi = wilson_interval(k, n)
    return {"correct": k, "scored": n, "accuracy": k / n if n else None, "ci95": [lo, hi] if n else None}
