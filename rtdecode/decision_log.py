"""The append-only JSON Lines decision log: one record per line, flushed per record.

The daemon writes one per run (``start``, ``warmup``, every decision, ``stop``) and the offline
decoder (``rtdecode decode``) writes the same records, so the two can be compared line by line.
A process that dies leaves every line already written intact; a restart appends.
"""

from __future__ import annotations

import json
from pathlib import Path

from rtdecode.errors import RtdecodeError


class DecisionLog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise RtdecodeError(f"decision log {self.path} is a folder; give a file path (e.g. {self.path}/run.jsonl)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
        except OSError as err:
            raise RtdecodeError(f"cannot open the decision log {self.path}: {err.strerror or err}") from None

    def write(self, record: dict) -> str:
        """Append one record; returns the line written (without the newline)."""
        line = json.dumps(record, separators=(",", ":"))
        self.write_line(line)
        return line

    def write_line(self, line: str) -> None:
        """Append a record already serialised (one JSON object, no newline)."""
        self._f.write(line + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()
