"""Console output shared by every command line of the project (rich), and help that reads in a pipe.

Consoles never wrap lines, so paths stay whole, and in a pipe tables get the width they need.
Help is rendered with rich on a terminal and as plain text when stdout is a pipe or a file (rich's
80-column option boxes do not survive ``less`` or ``grep``).
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: In a pipe or a file rich would assume 80 columns and fold tables ("natural/ar…"); give them room
#: (a table only takes the width its content needs).
PIPE_WIDTH = 240
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else PIPE_WIDTH)
err_console = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else PIPE_WIDTH)
#: typer's ``rich_markup_mode``: rich help on a terminal, plain click help otherwise.
HELP_MARKUP = "rich" if sys.stdout.isatty() else None


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
