"""Bad NWB inputs give errors that name what is wrong, in the API and in the CLI."""

import math
import shutil
import subprocess
import sys

import h5py
import pytest
from rtdecode.offline.allen import UnitFilter, open_session, parse_allen_number

from rtdecode.errors import NWBLayoutError

from .conftest import manifest


@pytest.fixture
def nwb_copy(small_animal, tmp_path):
    src = small_animal / manifest(small_animal)["nwb"]
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    return dst


def _set_session_type(path, value):
    with h5py.File(path, "r+") as f:
        del f["general/stimulus"]
        f["general/stimulus"] = value


def test_functional_connectivity_session_is_refused(nwb_copy):
    _set_session_type(nwb_copy, "functional_connectivity")
    with pytest.raises(
        NWBLayoutError, match="Functional Connectivity session.*no natural scenes and no static gratings"
    ):
        open_session(nwb_copy)


def test_unknown_session_type(nwb_copy):
    _set_session_type(nwb_copy, "brain_observatory_2.0")
    with pytest.raises(NWBLayoutError, match="'brain_observatory_2.0' is not supported"):
        open_session(nwb_copy)


def test_missing_column_is_named(nwb_copy):
    with h5py.File(nwb_copy, "r+") as f:
        del f["intervals/static_gratings_presentations/phase"]
        del f["units/peak_channel_id"]
    with pytest.raises(NWBLayoutError) as info:
        open_session(nwb_copy)
    msg = str(info.value)
    assert "/intervals/static_gratings_presentations lacks column(s) phase" in msg
    assert "/units lacks column(s) peak_channel_id" in msg


def test_missing_table_is_named(nwb_copy):
    with h5py.File(nwb_copy, "r+") as f:
        del f["intervals/natural_scenes_presentations"]
    with pytest.raises(NWBLayoutError, match="table /intervals/natural_scenes_presentations is missing"):
        open_session(nwb_copy)


def test_missing_session_type(nwb_copy):
    with h5py.File(nwb_copy, "r+") as f:
        del f["general/stimulus"]
    with pytest.raises(NWBLayoutError, match="/general/stimulus .* is missing"):
        open_session(nwb_copy)


def test_area_without_units(small_animal):
    with (
        open_session(small_animal / manifest(small_animal)["nwb"], UnitFilter(area="LGd")) as s,
        pytest.raises(NWBLayoutError, match="no units in area 'LGd'.*areas in this file: CA1, VISp"),
    ):
        s.units()


def test_not_an_nwb(tmp_path):
    p = tmp_path / "x.nwb"
    p.write_text("hello")
    with pytest.raises(NWBLayoutError, match="not an HDF5/NWB file"):
        open_session(p)
    with pytest.raises(NWBLayoutError, match="no such NWB file"):
        open_session(tmp_path / "missing.nwb")


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"0.25", 0.25),
        (" 0.5 ", 0.5),
        ("N/A", math.nan),
        ("null", math.nan),
        ("", math.nan),
        ("nan", math.nan),
        ("[0.75, 0.75]", 0.75),
        (b"[3644.93333333, 3644.93333333]", 3644.93333333),
        (0.0, 0.0),
        ("junk", math.nan),
    ],
)
def test_defensive_number_parsing(raw, want):
    got = parse_allen_number(raw)
    assert (math.isnan(got) and math.isnan(want)) or got == want


def test_cli_reports_bad_nwb_without_traceback(nwb_copy):
    _set_session_type(nwb_copy, "functional_connectivity")
    proc = subprocess.run(
        [sys.executable, "-m", "rtdecode", "session", "info", str(nwb_copy)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Functional Connectivity session" in proc.stderr


def test_cli_session_info(small_animal):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtdecode",
            "session",
            "info",
            str(small_animal / manifest(small_animal)["nwb"]),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "brain_observatory_1.1" in proc.stdout and "units:" in proc.stdout
