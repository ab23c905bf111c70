"""The append-only JSON Lines decision log: one record per line, each handed to the OS as one write.

The daemon writes one per run (``start``, ``warmup``, every decision, ``stop``) and the offline
decoder (``rtdecode decode``) writes the same records, so the two can be compared line by line.
A process that dies leaves every line already written intact; a restart appends.

Lines are whole or absent. A write the file system cuts short (a full disk) is truncated back to
the last whole line, and a torn last line left by a killed process or a power cut is cut off when
the log is opened again (and reported in ``repaired_bytes``), so the file always parses.

``tolerant=True`` (the daemon's log, past its start): a failing write never raises. The record is
kept in memory (up to ``max_pending_bytes``; beyond that the oldest unwritten ones are dropped and
counted), the failure is reported once through ``on_change``, and the pending records are written,
in order, as soon as the file system takes them again (at the next write, or :meth:`retry`, at most
once per ``retry_s``). The daemon keeps publishing every decision meanwhile; ``status`` shows
:meth:`health`.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rtdecode.errors import RtdecodeError

#: How far back from the end a torn last line is looked for when the log is reopened.
TAIL_BYTES = 1 << 20


def free_bytes(path: str | Path) -> int | None:
    """Bytes free for an unprivileged writer on ``path``'s file system (None for a device or unknown)."""
    p = Path(path)
    if p.exists() and not p.is_file():
        return None
    try:
        st = os.statvfs(p.parent)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class DecisionLog:
    def __init__(
        self,
        path: str | Path,
        tolerant: bool = False,
        on_change: Callable[[str], None] | None = None,
        retry_s: float = 1.0,
        max_pending_bytes: int = 64 << 20,
    ) -> None:
        self.path = Path(path)
        self.tolerant = tolerant
        self.on_change = on_change or (lambda _msg: None)
        self.retry_s = float(retry_s)
        self.max_pending_bytes = int(max_pending_bytes)
        self.error: str | None = None  # set while writing fails
        self.failures = 0  # episodes of failing writes
        self.late = 0  # records written after a failure, once the file system took them again
        self.dropped = 0  # records lost: more pending than max_pending_bytes
        self.repaired_bytes = 0  # a torn last line cut off at open
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._next_retry = 0.0
        if self.path.is_dir():
            raise RtdecodeError(f"decision log {self.path} is a folder; give a file path (e.g. {self.path}/run.jsonl)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise RtdecodeError(f"cannot open the decision log {self.path}: {err.strerror or err}") from None
        try:
            self._repair_tail()
        except OSError as err:
            os.close(self._fd)
            raise RtdecodeError(f"cannot repair the decision log {self.path}: {err.strerror or err}") from None

    # -- state -----------------------------------------------------------------------------------
    @property
    def unlogged(self) -> int:
        """Records published but not (yet) in the file."""
        return len(self._pending)

    def health(self) -> dict:
        return {
            "path": str(self.path),
            "error": self.error,
            "failures": self.failures,
            "unlogged": self.unlogged,
            "written_late": self.late,
            "dropped": self.dropped,
            "repaired_bytes": self.repaired_bytes,
        }

    # -- writing ---------------------------------------------------------------------------------
    def write(self, record: dict, strict: bool = False) -> str:
        """Append one record; returns the line written (without the newline)."""
        line = json.dumps(record, separators=(",", ":"))
        self.write_line(line, strict)
        return line

    def write_line(self, line: str, strict: bool = False) -> None:
        """Append a record already serialised (one JSON object, no newline). ``strict`` (or a log that
        is not tolerant): a failure raises :class:`RtdecodeError` instead of being kept for later."""
        data = (line + "\n").encode()
        if self._pending:
            self._keep(data)
            self._flush_pending(force=False)
            return
        try:
            self._write_whole(data)
        except OSError as err:
            if strict or not self.tolerant:
                raise RtdecodeError(f"cannot write the decision log {self.path}: {err.strerror or err}") from None
            self._keep(data)
            self._failing(err)

    def retry(self) -> bool:
        """Write what is pending if the file system takes it now; True when nothing is pending."""
        if self._pending:
            self._flush_pending(force=False)
        return not self._pending

    def flush(self, wait_s: float = 0.0) -> bool:
        """Try now (and for up to ``wait_s`` more) to write what is pending; True when nothing is."""
        deadline = time.monotonic() + wait_s
        while self._pending:
            self._flush_pending(force=True)
            if not self._pending or time.monotonic() >= deadline:
                break
            time.sleep(min(0.2, self.retry_s))
        return not self._pending

    def close(self) -> None:
        """Close after one last try to write what is pending (see :meth:`flush`, :meth:`health`)."""
        self.flush()
        os.close(self._fd)

    # -- internals -------------------------------------------------------------------------------
    def _write_whole(self, data: bytes) -> None:
        """One line, whole or not at all: a short write is cut back to the previous line's end (the
        bytes this call wrote are known, so the happy path costs no extra system call)."""
        view = memoryview(data)
        written = 0
        try:
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += n
                view = view[n:]
        except OSError:
            if written:
                try:
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
                except OSError:
                    pass  # a device (e.g. /dev/full) has no size to restore
            raise

    def _keep(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_bytes += len(data)
        while self._pending_bytes > self.max_pending_bytes and len(self._pending) > 1:
            self._pending_bytes -= len(self._pending.popleft())
            self.dropped += 1

    def _failing(self, err: OSError) -> None:
        reason = err.strerror or str(err)
        self._next_retry = time.monotonic() + self.retry_s
        if self.error is None:
            self.error = reason
            self.failures += 1
            self.on_change(
                f"error: the decision log {self.path} cannot be written ({reason}); every decision is still "
                f"published, unlogged ones are kept in memory and written when it can be (retried every "
                f"{self.retry_s:g} s)"
            )

    def _flush_pending(self, force: bool) -> None:
        if not force and time.monotonic() < self._next_retry:
            return
        written = 0
        while self._pending:
            data = self._pending[0]
            try:
                self._write_whole(data)
            except OSError as err:
                self.late += written
                self._failing(err)
                return
            self._pending.popleft()
            self._pending_bytes -= len(data)
            written += 1
        self.late += written
        if self.error is not None:
            dropped = f", {self.dropped} dropped (over {self.max_pending_bytes >> 20} MiB kept)" if self.dropped else ""
            self.on_change(
                f"note: the decision log {self.path} is written again ({self.error} is over); "
                f"{self.late} record(s) written late{dropped}"
            )
            self.error = None

    def _repair_tail(self) -> None:
        st = os.fstat(self._fd)
        if not st.st_size or not os.path.isfile(self.path):
            return
        with open(self.path, "rb") as f:
            start = max(0, st.st_size - TAIL_BYTES)
            f.seek(start)
            tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = start + cut + 1 if cut >= 0 else (0 if start == 0 else st.st_size)
        if keep == st.st_size:
            return  # a last line longer than TAIL_BYTES: left as it is
        os.ftruncate(self._fd, keep)
        self.repaired_bytes = st.st_size - keep
