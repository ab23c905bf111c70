"""The ``rtdecode`` command line.

Errors caused by input (a bad config, a file in the wrong layout) are printed as one message
naming what is wrong, and the command exits with status 2; no traceback reaches the user.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtdecode.errors import RtdecodeError

app = typer.Typer(
    name="rtdecode",
    help=(
        "Real-time natural-vs-artificial stimulus decoding from Neuropixels streams (Open Ephys "
        "ZMQ Interface), and the offline tools that simulate sessions and build its decoders."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Rig configuration files (TOML).", no_args_is_help=True)
session_app = typer.Typer(help="Allen-layout NWB session files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(session_app, name="session")

console = Console()
err_console = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )


# ------------------------------------------------------------------------------------------------
@config_app.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="rig config TOML, e.g. rig_configs/replay_local.toml")],
    as_json: Annotated[bool, typer.Option("--json", help="print the resolved config as JSON")] = False,
) -> None:
    """Validate a rig config and print the resolved configuration (defaults filled in)."""
    from rtdecode.config import load_rig_config

    cfg = load_rig_config(file)
    resolved = cfg.model_dump(mode="json")
    if as_json:
        print(json.dumps(resolved, indent=2))
        return
    console.print(f"[green]ok[/green]: {file} is a valid rig config ({cfg.name})")
    for section, values in resolved.items():
        if not isinstance(values, dict):
            console.print(f"{section} = {values!r}")
            continue
        console.print(f"[bold]\\[{section}][/bold]")
        for key, value in values.items():
            console.print(f"  {key} = {value!r}")


# ------------------------------------------------------------------------------------------------
@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="folder to write the animals into (M0, M1, ...)")],
    animals: Annotated[int, typer.Option(help="number of animals")] = 1,
    channels: Annotated[int, typer.Option(help="recorded channels of a Neuropixels 1.0 (8-384)")] = 32,
    units: Annotated[int, typer.Option(help="units per animal")] = 48,
    repeats: Annotated[
        int, typer.Option(help="repeats of every stimulus condition (50 in the Allen data)")
    ] = 3,
    seed: Annotated[int, typer.Option(help="random seed; the same seed gives the same files")] = 0,
    frame_scale: Annotated[
        float, typer.Option(help="stimulus frame size relative to the 918x1174 Allen template")
    ] = 0.25,
    recording: Annotated[
        bool, typer.Option("--recording/--no-recording", help="write the 30 kHz Open Ephys recording")
    ] = True,
    ttl_line: Annotated[int, typer.Option(help="0-based TTL line of stimulus onsets")] = 0,
) -> None:
    """Simulate ground-truth animals in the real formats (Allen NWB, Open Ephys Binary, stimuli)."""
    from rtdecode.offline.simulate import SimulationParams
    from rtdecode.offline.simulate import simulate as run_simulation

    params = SimulationParams(
        animals=animals,
        channels=channels,
        units=units,
        repeats=repeats,
        seed=seed,
        frame_scale=frame_scale,
        write_recording=recording,
        ttl_line=ttl_line,
    )
    try:
        params.validate()
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    with progress_bar() as progress:
        folders = run_simulation(params, out, progress=progress)
    table = Table(title=f"simulated {len(folders)} animal(s) in {out}")
    for col in ("animal", "session", "trials", "duration", "channels", "units", "recording"):
        table.add_column(col)
    for folder in folders:
        m = json.loads((folder / "animal.json").read_text())
        table.add_row(
            m["name"],
            m["nwb"],
            str(m["n_trials"]),
            f"{m['duration_s']:.1f} s",
            str(m["channels"]),
            str(m["units"]),
            str(folder / m["recording"]) if m["recording"] else "-",
        )
    console.print(table)


# ------------------------------------------------------------------------------------------------
@session_app.command("info")
def session_info(
    nwb: Annotated[Path, typer.Argument(help="session NWB file (Allen Visual Coding Neuropixels layout)")],
    area: Annotated[
        str, typer.Option(help="brain area of the units to keep ('all' keeps every area)")
    ] = "VISp",
    no_quality_filter: Annotated[
        bool, typer.Option("--no-quality-filter", help="keep units failing the AllenSDK default metrics")
    ] = False,
) -> None:
    """Read an Allen-layout session and summarise its units and stimulus presentations."""
    from rtdecode.offline.allen import UnitFilter, open_session

    f = UnitFilter(area=None if area == "all" else area)
    if no_quality_filter:
        f = UnitFilter(
            area=f.area,
            amplitude_cutoff_max=None,
            presence_ratio_min=None,
            isi_violations_max=None,
            quality=None,
        )
    with open_session(nwb, f) as s:
        all_units = s.all_units()
        units = s.units()
        trials = s.trials(include_blanks=True)
        invalid = s.invalid_stimulus_intervals()
        console.print(f"[bold]{nwb}[/bold]: session {s.session_id}, type {s.session_type}")
        console.print(
            f"units: {len(units)} kept of {len(all_units)} "
            f"(area {area}; areas in file: {all_units.location.value_counts(dropna=False).to_dict()})"
        )
        console.print(f"presentations: {trials.groupby(['family', 'label']).size().to_dict()}")
        console.print(f"invalid 'stimulus' intervals dropped: {len(invalid)}")


# ------------------------------------------------------------------------------------------------
@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="where the demo writes its files")] = Path("demo_out"),
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
) -> None:
    """The main job on the embedded default: as much of the pipeline as exists, end to end."""
    from rtdecode.demo import run_demo

    run_demo(out, seed, console=console, progress=progress_bar())


def main() -> None:
    """Console-script entry point: user errors become one message and exit status 2."""
    try:
        app()
    except RtdecodeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
