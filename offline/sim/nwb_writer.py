"""Write a session NWB file in the Allen Visual Coding Neuropixels layout (reference/allen.md section 1).

Written with pynwb, so pynwb reads it back; the paths and dtypes are those of the real
``session_<id>.nwb`` files that our h5py reader (``offline/allen.py``) reads: session type in
``/general/stimulus``, an electrodes table whose ``location`` holds the structure acronym, a units
table with ragged ``spike_times`` / ``spike_amplitudes`` and the quality metrics,
``/intervals/natural_scenes_presentations`` (``frame`` float, -1 = blank),
``/intervals/static_gratings_presentations`` (``phase`` as text, ``N/A`` and NaN orientation /
spatial frequency for blanks), ``spontaneous_presentations``, ``invalid_times`` and the running
module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SESSION_TYPE = "brain_observatory_1.1"

UNIT_METRICS = (
    "firing_rate",
    "isi_violations",
    "presence_ratio",
    "amplitude_cutoff",
    "snr",
    "amplitude",
    "waveform_duration",
)


@dataclass
class AllenSessionData:
    """Everything that goes into one Allen-layout session file."""

    session_id: int
    start_time: dt.datetime
    probe_name: str
    sampling_rate: float
    electrodes: (
        pd.DataFrame
    )  # id, location, probe_vertical_position, probe_horizontal_position, local_index, valid_data
    units: pd.DataFrame  # id, peak_channel_id, local_index, quality, UNIT_METRICS...
    spike_times: list[np.ndarray]  # per unit row, seconds
    spike_amplitudes: list[np.ndarray]  # per unit row, volts
    natural_scenes: pd.DataFrame  # start_time, stop_time, frame, stimulus_block
    static_gratings: (
        pd.DataFrame
    )  # start_time, stop_time, orientation, spatial_frequency, phase, contrast, stimulus_block
    spontaneous: pd.DataFrame  # start_time, stop_time, stimulus_block
    invalid_times: pd.DataFrame  # start_time, stop_time, tags (list of str)
    running_t: np.ndarray
    running_speed: np.ndarray
    session_type: str = SESSION_TYPE


def write_allen_session_nwb(path: str | Path, data: AllenSessionData) -> Path:
    """Write ``data`` to ``path`` with pynwb; returns the path."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject

    path = Path(path)
    nwb = NWBFile(
        session_description="Simulated Allen Visual Coding Neuropixels session (rtdecode simulate)",
        identifier=str(data.session_id),
        session_start_time=data.start_time,
        session_id=str(data.session_id),
        institution="rtdecode simulator",
        stimulus_notes=data.session_type,
        subject=Subject(subject_id=f"sim-{data.session_id}", species="Mus musculus", sex="U", age="P100D"),
    )
    device = nwb.create_device(name=data.probe_name, description="Neuropixels 1.0 Probe", manufacturer="imec")
    group = nwb.create_electrode_group(
        name=data.probe_name, description="simulated probe", location="See electrode locations", device=device
    )
    e = data.electrodes
    for col, desc in (
        ("probe_vertical_position", "distance along the shank from the tip, um"),
        ("probe_horizontal_position", "horizontal position on the shank, um"),
        ("probe_id", "probe id"),
        ("local_index", "channel number on the probe"),
        ("valid_data", "whether the channel carries valid data"),
    ):
        nwb.add_electrode_column(name=col, description=desc)
    for row in e.itertuples(index=False):
        nwb.add_electrode(
            id=int(row.id),
            location=str(row.location),
            group=group,
            x=-1000.0,
            y=-1000.0,
            z=-1000.0,
            filtering="AP band, 300 Hz high-pass (hardware)",
            probe_vertical_position=int(row.probe_vertical_position),
            probe_horizontal_position=int(row.probe_horizontal_position),
            probe_id=0,
            local_index=int(row.local_index),
            valid_data=bool(row.valid_data),
        )

    u = data.units
    for col in ("peak_channel_id", "local_index", "quality", *UNIT_METRICS):
        nwb.add_unit_column(name=col, description=col)
    nwb.add_unit_column(name="spike_amplitudes", description="spike amplitudes (V)", index=True)
    for i, row in enumerate(u.itertuples(index=False)):
        nwb.add_unit(
            id=int(row.id),
            spike_times=np.asarray(data.spike_times[i], dtype=np.float64),
            spike_amplitudes=np.asarray(data.spike_amplitudes[i], dtype=np.float64),
            peak_channel_id=int(row.peak_channel_id),
            local_index=int(row.local_index),
            quality=str(row.quality),
            **{m: float(getattr(row, m)) for m in UNIT_METRICS},
        )

    stim_module = nwb.create_processing_module("stimulus", "stimulus frame timestamps")
    all_starts = np.sort(
        np.concatenate([data.natural_scenes.start_time, data.static_gratings.start_time, data.spontaneous.start_time])
    )
    stim_ts = TimeSeries(
        name="timestamps",
        data=np.arange(len(all_starts), dtype=np.float64),
        unit="frame",
        timestamps=all_starts,
    )
    stim_module.add(stim_ts)

    def add_table(name: str, df: pd.DataFrame, columns: dict[str, str], stimulus_name: str) -> None:
        table = TimeIntervals(name=name, description=f"{stimulus_name} presentations")
        table.add_column(name="stimulus_name", description="stimulus name")
        table.add_column(name="stimulus_block", description="stimulus block index")
        for col, desc in columns.items():
            table.add_column(name=col, description=desc)
        index = np.searchsorted(all_starts, df.start_time.to_numpy())
        for k, row in enumerate(df.itertuples(index=False)):
            table.add_row(
                start_time=float(row.start_time),
                stop_time=float(row.stop_time),
                stimulus_name=stimulus_name,
                stimulus_block=float(row.stimulus_block),
                tags=[stimulus_name],
                timeseries=[(int(index[k]), 1, stim_ts)],
                **{c: getattr(row, c) for c in columns},
            )
        nwb.add_time_intervals(table)

    add_table(
        "natural_scenes_presentations",
        data.natural_scenes,
        {"frame": "image index, -1 = blank"},
        "natural_scenes",
    )
    sg = data.static_gratings.copy()
    sg["phase"] = [("N/A" if not np.isfinite(p) else f"{p:g}") for p in sg.phase]
    sg["units"] = "deg"
    sg["size"] = "[250.0, 250.0]"
    sg["mask"] = "None"
    sg["opacity"] = 1.0
    add_table(
        "static_gratings_presentations",
        sg,
        {
            "orientation": "deg, NaN = blank",
            "spatial_frequency": "cycles/deg, NaN = blank",
            "phase": "fraction of a cycle (text), N/A = blank",
            "contrast": "Michelson contrast",
            "size": "deg (text)",
            "mask": "text",
            "units": "text",
            "opacity": "opacity",
        },
        "static_gratings",
    )
    add_table("spontaneous_presentations", data.spontaneous, {}, "spontaneous")

    for row in data.invalid_times.itertuples(index=False):
        nwb.add_invalid_time_interval(
            start_time=float(row.start_time), stop_time=float(row.stop_time), tags=list(row.tags)
        )

    running = nwb.create_processing_module("running", "running speed")
    running.add(
        TimeSeries(
            name="running_speed",
            data=data.running_speed.astype(np.float64),
            timestamps=data.running_t.astype(np.float64),
            unit="cm/s",
        )
    )
    dt_s = np.diff(data.running_t, append=data.running_t[-1] + (data.running_t[1] - data.running_t[0]))
    running.add(
        TimeSeries(
            name="running_speed_end_times",
            data=np.full(len(data.running_t), np.nan),
            timestamps=data.running_t + dt_s,
            unit="cm/s",
        )
    )

    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path
