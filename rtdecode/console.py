"""Console output shared by every command line of the project (rich), and help that reads in a pipe.

Consoles never wrap lines, so paths stay whole, and in a pipe tables get the width they need.
Help is rendered with rich on a terminal and as plain text when stdout is a pipe or a file (rich's
80-column option boxes do not survive ``less`` or ``grep``). Progress is a live bar on a terminal
and, in a log file or a pipe (where rich draws nothing until the end), one plain line per tenth of
the work or per minute, whichever comes first.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: In a pipe or a file rich would assume 80 columns and fold tables ("natural/ar…"); give them room
#: (a table only takes the width its content needs).
PIPE_WIDTH = 240
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else PIPE_WIDTH)
err_console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)
#: typer's ``rich_markup_mode``: rich help on a terminal, plain click help otherwise.
HELP_MARKUP = "rich" if sys.stdout.isatty() else None


class LineProgress:
    """Progress as plain lines, for a stderr that is a file or a pipe: the calls of rich's
    :class:`Progress` that the project uses (``add_task``, ``update``; a context manager)."""

    def __init__(self, out=None, every_s: float = 60.0) -> None:
        self.out = out or sys.stderr
        self.every_s = every_s
        self._tasks: dict[int, dict] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        for task_id, t in self._tasks.items():
            if not t["done"] and t["completed"]:
                self._say(task_id)

    def add_task(self, description: str, total: float | None = None, **_) -> int:
        task_id = len(self._tasks)
        now = time.monotonic()
        self._tasks[task_id] = {
            "description": description, "total": total, "completed": 0.0,
            "t0": now, "said_at": now, "said_tenth": 0, "done": False,
        }  # fmt: skip
        return task_id

    def update(self, task_id: int, advance: float | None = None, completed: float | None = None, total=None, **_):
        t = self._tasks[task_id]
        if total is not None:
            t["total"] = total
        if completed is not None:
            t["completed"] = float(completed)
        if advance is not None:
            t["completed"] += advance
        total = t["total"]
        tenth = int(10 * t["completed"] / total) if total else 0
        finished = bool(total) and t["completed"] >= total
        if finished or tenth > t["said_tenth"] or time.monotonic() - t["said_at"] >= self.every_s:
            t["said_tenth"] = tenth
            self._say(task_id)
            t["done"] = finished

    def _say(self, task_id: int) -> None:
        t = self._tasks[task_id]
        now = time.monotonic()
        t["said_at"] = now
        elapsed = time.strftime("%H:%M:%S", time.gmtime(now - t["t0"]))
        total = t["total"]
        of = (
            f"{t['completed']:.0f}/{total:.0f} ({100 * t['completed'] / total:.0f} %)"
            if total
            else f"{t['completed']:.0f}"
        )
        print(f"{t['description']}: {of}, {elapsed} elapsed", file=self.out, flush=True)


def progress_bar() -> Progress | LineProgress:
    """A live bar on a terminal; plain progress lines in a log file or a pipe."""
    if not err_console.is_terminal:
        return LineProgress()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
