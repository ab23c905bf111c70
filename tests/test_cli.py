import json
import subprocess
import sys

from typer.testing import CliRunner

from rtdecode.cli import app


def test_help_lists_every_subcommand_with_one_line():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("simulate", "demo", "config", "session"):
        assert cmd in result.output


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "rtdecode", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "simulate" in proc.stdout


def test_simulate_cli_writes_animals(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--out",
            str(tmp_path),
            "--animals",
            "2",
            "--channels",
            "8",
            "--units",
            "5",
            "--repeats",
            "1",
            "--no-recording",
            "--seed",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    for name in ("M0", "M1"):
        m = json.loads((tmp_path / name / "animal.json").read_text())
        assert m["recording"] is None and m["channels"] == 8 and m["units"] == 5
    assert not (tmp_path / ".stimuli_cache").exists()


def test_simulate_cli_rejects_bad_sizes(tmp_path):
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path), "--channels", "1000"])
    assert result.exit_code == 2
    assert "channels = 1000: expected 8 to 384" in result.output
