"""Reader for Allen Visual Coding Neuropixels session NWB files, real or simulated.

Reads with h5py along the paths of reference/allen.md section 1, so it works on the real
1.7-3.3 GB files without AllenSDK (which pins old numpy/pandas): spike times are sliced one unit
at a time through ``spike_times_index`` and never read whole.

- Session type from ``/general/stimulus``; a Functional Connectivity session is refused (it has
  neither natural scenes nor static gratings).
- Units filtered by the AllenSDK default quality thresholds (configurable) and by the brain
  area of their peak channel (``location`` in the electrodes table; VISp by default).
- ``natural_scenes_presentations`` (``frame`` -1 = blank) and ``static_gratings_presentations``
  (blank = NaN orientation / spatial frequency; ``phase`` text parsed defensively), with
  presentations overlapping an ``invalid_times`` interval tagged ``stimulus`` dropped.

Every missing table or column is named in the error.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from rtdecode.errors import NWBLayoutError

BRAIN_OBSERVATORY = "brain_observatory_1.1"
FUNCTIONAL_CONNECTIVITY = "functional_connectivity"
FAMILIES = ("natural_scenes", "static_gratings")

ELECTRODES = "general/extracellular_ephys/electrodes"
UNITS = "units"
REQUIRED_UNIT_COLUMNS = ("id", "peak_channel_id", "spike_times", "spike_times_index")
REQUIRED_ELECTRODE_COLUMNS = ("id", "location")
FAMILY_COLUMNS = {
    "natural_scenes": ("start_time", "stop_time", "frame"),
    "static_gratings": ("start_time", "stop_time", "orientation", "spatial_frequency", "phase"),
}
MISSING_TEXT = {"", "n/a", "na", "null", "nan", "none"}


@dataclass(frozen=True)
class UnitFilter:
    """AllenSDK's default unit filters (``UNIT_FILTER_DEFAULTS``) plus the brain area.

    Set a threshold to ``None`` to disable it; ``area=None`` keeps every area."""

    area: str | None = "VISp"
    amplitude_cutoff_max: float | None = 0.1
    presence_ratio_min: float | None = 0.95
    isi_violations_max: float | None = 0.5
    quality: str | None = "good"
    require_valid_channel: bool = True

    @classmethod
    def no_quality(cls, area: str | None = None) -> UnitFilter:
        """Keep every unit (of ``area``, or of every area), whatever its quality metrics."""
        return cls(area=area, amplitude_cutoff_max=None, presence_ratio_min=None, isi_violations_max=None, quality=None)


def _text(values) -> np.ndarray:
    """h5py text (bytes or str, possibly object arrays) -> numpy array of str."""
    arr = np.asarray(values)
    if arr.dtype.kind in "SO":
        return np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.ravel()], dtype=object
        ).reshape(arr.shape)
    return arr.astype(str)


def parse_allen_number(value) -> float:
    """Defensively parse an Allen text column value (e.g. SG ``phase``) to float; NaN if missing.

    Accepts bytes or str, surrounding spaces, ``N/A``/``null``/``nan``/empty as missing, and
    list-like strings such as ``"[0.25, 0.25]"`` (the first element is taken)."""
    if value is None:
        return math.nan
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    text = str(value).strip()
    if text.startswith("["):
        text = text.strip("[]").split(",")[0].strip()
    if text.lower() in MISSING_TEXT:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def _damaged_file_is_named(method):
    """HDF5 read errors inside a file that opened (a block of zeroed or cut bytes) become an
    :class:`NWBLayoutError` naming the file and what was being read, not a traceback."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
            if isinstance(err, NWBLayoutError):
                raise
            raise NWBLayoutError(
                f"{self.path}: damaged or unreadable while reading {method.__name__} ({type(err).__name__}: {err})"
            ) from None

    return wrapper


class AllenSession:
    """An open Allen-layout session file. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, unit_filter: UnitFilter | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise NWBLayoutError(f"{self.path}: no such NWB file")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as err:
            raise NWBLayoutError(f"{self.path}: not an HDF5/NWB file ({err})") from None
        self.unit_filter = unit_filter or UnitFilter()
        try:
            self.session_type = self._read_session_type()
            self._check_layout()
        except NWBLayoutError:
            self._f.close()
            raise
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:  # damaged HDF5 structures
            self._f.close()
            raise NWBLayoutError(
                f"{self.path}: damaged or unreadable HDF5 while checking the layout ({type(err).__name__}: {err})"
            ) from None

    # ---- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> AllenSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- layout checks -----------------------------------------------------------------------
    def _read_session_type(self) -> str:
        if "general/stimulus" not in self._f:
            raise NWBLayoutError(
                f"{self.path}: /general/stimulus (the session type) is missing; expected "
                f"'{BRAIN_OBSERVATORY}' as in Allen Visual Coding Neuropixels session files"
            )
        return str(_text(self._f["general/stimulus"][()]).item()).strip()

    def _check_layout(self) -> None:
        if self.session_type == FUNCTIONAL_CONNECTIVITY:
            raise NWBLayoutError(
                f"{self.path}: this is a Functional Connectivity session ('{self.session_type}'); it shows "
                "no natural scenes and no static gratings, so it cannot be used to decode natural vs. "
                f"artificial stimuli. Use a '{BRAIN_OBSERVATORY}' session."
            )
        if self.session_type != BRAIN_OBSERVATORY:
            raise NWBLayoutError(
                f"{self.path}: session type '{self.session_type}' is not supported; expected '{BRAIN_OBSERVATORY}'"
            )
        problems = []
        for group, cols in ((UNITS, REQUIRED_UNIT_COLUMNS), (ELECTRODES, REQUIRED_ELECTRODE_COLUMNS)):
            if group not in self._f:
                problems.append(f"table /{group} is missing")
                continue
            missing = [c for c in cols if c not in self._f[group]]
            if missing:
                problems.append(f"table /{group} lacks column(s) {', '.join(missing)}")
        for fam, cols in FAMILY_COLUMNS.items():
            table = f"intervals/{fam}_presentations"
            if table not in self._f:
                problems.append(f"table /{table} is missing")
                continue
            missing = [c for c in cols if c not in self._f[table]]
            if missing:
                problems.append(f"table /{table} lacks column(s) {', '.join(missing)}")
        if problems:
            raise NWBLayoutError(f"{self.path}: not a usable Allen session: " + "; ".join(problems))

    # ---- channels and units ------------------------------------------------------------------
    @property
    def session_id(self) -> str:
        return str(_text(self._f["identifier"][()]).item()) if "identifier" in self._f else self.path.stem

    @_damaged_file_is_named
    def electrodes(self) -> pd.DataFrame:
        """Channel table: id, location (structure acronym; missing for out-of-brain), positions."""
        g = self._f[ELECTRODES]
        df = pd.DataFrame({"id": g["id"][()].astype(np.int64)})
        loc = _text(g["location"][()])
        df["location"] = [None if str(v).strip().lower() in MISSING_TEXT else str(v).split("-")[0] for v in loc]
        for col in ("probe_vertical_position", "probe_horizontal_position", "probe_id", "valid_data"):
            if col in g:
                df[col] = g[col][()]
        for col in ("local_index", "probe_channel_number"):
            if col in g:
                df["local_index"] = g[col][()]
                break
        return df

    @_damaged_file_is_named
    def all_units(self) -> pd.DataFrame:
        """Every unit, unfiltered, with the area of its peak channel and its row in the file."""
        g = self._f[UNITS]
        ids = g["id"][()].astype(np.int64)
        df = pd.DataFrame({"id": ids, "row": np.arange(len(ids)), "peak_channel_id": g["peak_channel_id"][()]})
        for col in ("quality", "firing_rate", "isi_violations", "presence_ratio", "amplitude_cutoff", "snr"):
            if col in g:
                df[col] = _text(g[col][()]) if col == "quality" else g[col][()]
        ch = self.electrodes().set_index("id")
        df["location"] = ch["location"].reindex(df.peak_channel_id).to_numpy()
        if "valid_data" in ch:
            df["valid_channel"] = ch["valid_data"].reindex(df.peak_channel_id).fillna(False).to_numpy(bool)
        return df

    @_damaged_file_is_named
    def units(self) -> pd.DataFrame:
        """Units passing :attr:`unit_filter`, sorted by id. Raises if none are left in the area."""
        df = self.all_units()
        f = self.unit_filter
        keep = df.location.notna()
        checks = (
            ("amplitude_cutoff", f.amplitude_cutoff_max, np.less_equal),
            ("presence_ratio", f.presence_ratio_min, np.greater_equal),
            ("isi_violations", f.isi_violations_max, np.less_equal),
        )
        for col, thr, op in checks:
            if thr is not None:
                if col not in df:
                    raise NWBLayoutError(f"{self.path}: /units lacks column {col} needed by the unit filter")
                keep &= op(df[col].to_numpy(float), thr)
        if f.quality is not None:
            if "quality" not in df:
                raise NWBLayoutError(f"{self.path}: /units lacks column quality needed by the unit filter")
            keep &= df.quality == f.quality
        if f.require_valid_channel and "valid_channel" in df:
            keep &= df.valid_channel
        passing = df[keep]
        if f.area is not None:
            in_area = passing[passing.location == f.area]
            if in_area.empty:
                areas = sorted(a for a in df.location.dropna().unique())
                raise NWBLayoutError(
                    f"{self.path}: no units in area '{f.area}' pass the unit filter "
                    f"({len(passing)} of {len(df)} units pass it; "
                    f"areas in this file: {', '.join(areas) or 'none'})"
                )
            passing = in_area
        return passing.sort_values("id").reset_index(drop=True)

    @_damaged_file_is_named
    def spike_times(self, unit_id: int) -> np.ndarray:
        """One unit's spike times (s), read as a slice of the ragged column."""
        g = self._f[UNITS]
        rows = np.flatnonzero(g["id"][()] == unit_id)
        if rows.size == 0:
            raise KeyError(f"unit {unit_id} is not in {self.path}")
        r = int(rows[0])
        index = g["spike_times_index"]
        start = int(index[r - 1]) if r > 0 else 0
        stop = int(index[r])
        return np.asarray(g["spike_times"][start:stop], dtype=np.float64)

    def iter_spike_times(self, unit_ids):
        """Yield (unit_id, spike_times) one unit at a time (memory bounded by one unit)."""
        g = self._f[UNITS]
        ids = g["id"][()]
        row_of = {int(u): i for i, u in enumerate(ids)}
        index = g["spike_times_index"][()]
        for uid in unit_ids:
            r = row_of[int(uid)]
            start = int(index[r - 1]) if r > 0 else 0
            yield int(uid), np.asarray(g["spike_times"][start : int(index[r])], dtype=np.float64)

    # ---- stimuli -----------------------------------------------------------------------------
    @_damaged_file_is_named
    def invalid_stimulus_intervals(self) -> np.ndarray:
        """(n, 2) start/stop of invalid_times intervals tagged ``stimulus``."""
        path = "intervals/invalid_times"
        if path not in self._f:
            return np.empty((0, 2))
        g = self._f[path]
        start, stop = g["start_time"][()], g["stop_time"][()]
        if "tags" not in g or "tags_index" not in g:
            return np.stack([start, stop], axis=1)
        tags = _text(g["tags"][()])
        idx = g["tags_index"][()]
        bounds = np.concatenate([[0], idx])
        is_stim = np.array([("stimulus" in set(tags[bounds[i] : bounds[i + 1]])) for i in range(len(start))], bool)
        return np.stack([start[is_stim], stop[is_stim]], axis=1)

    @_damaged_file_is_named
    def presentations(self, family: str, drop_invalid: bool = True) -> pd.DataFrame:
        """Presentations of ``family`` ('natural_scenes' or 'static_gratings'), sorted by time.

        Columns: start_time, stop_time, family, is_blank, and frame (natural scenes) or
        orientation / spatial_frequency / phase / contrast (static gratings, NaN for blanks)."""
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        g = self._f[f"intervals/{family}_presentations"]
        df = pd.DataFrame({"start_time": g["start_time"][()], "stop_time": g["stop_time"][()]})
        if "id" in g:
            df.insert(0, "presentation_id", g["id"][()])
        df["family"] = family
        if "stimulus_block" in g:  # the Allen tables number stimulus blocks; the splits use them
            df["stimulus_block"] = g["stimulus_block"][()].astype(np.float64)
        if family == "natural_scenes":
            frame = np.array([parse_allen_number(v) for v in g["frame"][()]])
            df["frame"] = frame
            df["is_blank"] = ~np.isfinite(frame) | (frame < 0)
        else:
            for col in ("orientation", "spatial_frequency", "phase", "contrast"):
                if col in g:
                    raw = g[col][()]
                    df[col] = (
                        np.array([parse_allen_number(v) for v in raw])
                        if raw.dtype.kind in "SOU"
                        else raw.astype(np.float64)
                    )
            df["is_blank"] = ~(np.isfinite(df.orientation) & np.isfinite(df.spatial_frequency))
        if drop_invalid:
            bad = self.invalid_stimulus_intervals()
            if len(bad):
                s = df.start_time.to_numpy()[:, None]
                e = df.stop_time.to_numpy()[:, None]
                overlaps = ((s < bad[None, :, 1]) & (e > bad[None, :, 0])).any(axis=1)
                df = df[~overlaps]
        return df.sort_values("start_time").reset_index(drop=True)

    @_damaged_file_is_named
    def trials(self, include_blanks: bool = False) -> pd.DataFrame:
        """Both families together, sorted by onset, with ``label`` natural / artificial / blank."""
        parts = [self.presentations(fam) for fam in FAMILIES]
        df = pd.concat(parts, ignore_index=True).sort_values("start_time").reset_index(drop=True)
        df["label"] = np.where(df.is_blank, "blank", np.where(df.family == "natural_scenes", "natural", "artificial"))
        if not include_blanks:
            df = df[~df.is_blank].reset_index(drop=True)
        return df

    @_damaged_file_is_named
    def running_speed(self) -> pd.DataFrame:
        """Running speed (cm/s) at its timestamps."""
        path = "processing/running/running_speed"
        if path not in self._f:
            raise NWBLayoutError(f"{self.path}: /{path} is missing")
        g = self._f[path]
        return pd.DataFrame({"time": g["timestamps"][()], "velocity": g["data"][()]})


def open_session(path: str | Path, unit_filter: UnitFilter | None = None) -> AllenSession:
    """Open an Allen-layout session NWB (see :class:`AllenSession`)."""
    return AllenSession(path, unit_filter)
