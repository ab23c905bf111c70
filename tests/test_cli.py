import json
import subprocess
import sys

from typer.testing import CliRunner

from rtdecode.cli import app


def test_help_lists_every_subcommand_with_one_line():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in (
        "simulate",
        "demo",
        "config",
        "session",
        "evaluate",
        "build",
        "bundle",
        "engine",
        "bench",
        "serve",
        "status",
        "stop",
        "watch",
        "replay",
        "report-session",
        "sort",
    ):
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


def test_build_refuses_bad_arguments(tmp_path, three_animals):
    r = CliRunner().invoke(
        app,
        [
            "build",
            "--train",
            str(three_animals[0]),
            "--target",
            str(tmp_path),
            "--out",
            str(tmp_path / "b"),
            "--scheduler",
            "none",
        ],
    )
    assert "expected an animal folder with animal.json" in str(r.exception)
    r = CliRunner().invoke(
        app,
        [
            "build",
            "--train",
            str(three_animals[0]),
            "--target",
            str(three_animals[1]),
            "--out",
            str(tmp_path / "b"),
            "--templates",
            "spykingcircus",
        ],
    )
    assert "expected kilosort4 or ground-truth" in str(r.exception)
    r = CliRunner().invoke(
        app,
        [
            "build",
            "--train",
            str(three_animals[1]),
            "--target",
            str(three_animals[1]),
            "--out",
            str(tmp_path / "b"),
            "--scheduler",
            "none",
        ],
    )
    assert "is the --target session: its trials are the training data already" in str(r.exception)
    r = CliRunner().invoke(
        app, ["build", "--target", str(three_animals[1]), "--out", str(tmp_path / "b"), "--decoder", "forest"]
    )
    assert r.exit_code == 2 and "decoder 'forest': expected one of network, linear, auto" in r.output


def test_evaluate_refuses_bad_combination(tmp_path, three_animals):
    r = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--sessions",
            str(three_animals[0]),
            "--out",
            str(tmp_path),
            "--combination",
            "M0",
            "--scheduler",
            "none",
        ],
    )
    assert r.exit_code == 2 and "expected TRAIN[,TRAIN...]:TARGET" in r.output


def test_bench_offline_writes_ratios(tmp_path):
    out = tmp_path / "offline.json"
    r = CliRunner().invoke(
        app,
        [
            "bench",
            "offline",
            "--out",
            str(out),
            "--trials",
            "300",
            "--units",
            "20",
            "--image-size",
            "32",
            "--calls",
            "3",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    n = res["neural_images"]
    assert n["ps_paths_max_rel_diff"] < 1e-4  # the per-condition and the direct PS agree
    for key, network in (("inference", "googlenet"), ("inference_efficientnet_lite0", "efficientnet-lite0")):
        inf = res[key]
        assert inf["network"] == network and inf["calls"] == 3
        assert inf["max_abs_logit_diff"] < 1e-3  # ONNX Runtime computes what torch computes
    assert "speed-up vs naive loop" in r.output and "EfficientNet-Lite0: ONNX Runtime p50" in r.output
