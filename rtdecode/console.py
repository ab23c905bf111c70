"""Console output shared by every command line of the project (rich), and help that reads in a pipe.

Consoles never wrap lines, so paths stay whole. Help is rendered with rich on a terminal and as
plain text when stdout is a pipe or a file (rich's 80-column option boxes do not survive ``less``
or ``grep``).
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
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
