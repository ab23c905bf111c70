"""Why a trial is decided degraded: one enum for every layer that can say so.

A decision's ``reasons`` is a list of these (serialised as their values, the words the log and the
console use); its ``status`` is ``"degraded: "`` and the reasons joined by ``"; "`` (an internal
error adds its exception there, the reason stays :attr:`Degraded.INTERNAL_ERROR`). The gap log
names the same causes.
"""

from __future__ import annotations

from enum import StrEnum

from rtdecode.stream.continuity import AnomalyKind


class Degraded(StrEnum):
    # samples in the trial's windows were not seen whole (the receiver's continuity checks)
    MESSAGE_GAP = "message gap"  # message numbers jumped: messages lost upstream
    SAMPLE_GAP = "sample gap"  # a block started after where the last one ended
    INCOMPLETE_BLOCK = "incomplete block"  # a block's channels did not all arrive
    RING_OVERRUN = "ring overrun"  # the worker fell behind and the receiver's ring was full
    DATA_GAP = "data gap"  # blocks the worker saw were not contiguous, with no cause reported
    RECEIVER_REPLACED = "receiver replaced"  # a dead receiver process's successor resumed the stream
    # the trial's windows cannot be complete
    RESTART = "acquisition restarted"  # its sample numbers belong to a finished segment
    WINDOW_BEFORE_STREAM = "window starts before the stream"
    RECORDING_ENDED = "recording ended before the trial's window closed"
    SHUTDOWN = "shutdown"  # the daemon stopped with the trial open
    UPSTREAM_SILENT = "upstream silent"  # no data for the silence timeout
    RECEIVER_STALLED = "receiver stalled"  # the receiver process stopped answering
    # ours
    INTERNAL_ERROR = "internal error"  # a bug while deciding: the status carries the exception

    @property
    def events_may_be_lost(self) -> bool:
        """Whether TTL events (stimulus onsets) in the span may be lost with its samples (the ring
        carries samples only: an overrun loses no events)."""
        return self in (Degraded.MESSAGE_GAP, Degraded.SAMPLE_GAP, Degraded.DATA_GAP, Degraded.RECEIVER_REPLACED)

    @classmethod
    def of_anomaly(cls, kind: AnomalyKind) -> Degraded:
        """The reason a data-losing stream anomaly gives the trials it overlaps."""
        if not kind.loses_data:
            raise ValueError(f"anomaly kind {kind.value!r} loses no data: it degrades no trial")
        return cls(kind.value.replace("_", " "))


def status_of(reasons: list[Degraded] | tuple[Degraded, ...], detail: str | None = None) -> str:
    """``"ok"`` or ``"degraded: <reason>; <reason>"``, with ``detail`` (an exception) after its reason."""
    if not reasons:
        return "ok"
    words = [r.value for r in reasons]
    if detail:
        words[-1] += f" ({detail})"
    return "degraded: " + "; ".join(words)
