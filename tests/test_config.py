import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtdecode.cli import app
from rtdecode.config import RigConfig, load_rig_config, parse_rig_config
from rtdecode.errors import ConfigError

RIG_CONFIGS = sorted((Path(__file__).parent.parent / "rig_configs").glob("*.toml"))

VALID = {
    "name": "t",
    "stream": {
        "data_port": 5556,
        "heartbeat_port": 5557,
        "stream_name": "ProbeA-AP",
        "channel_count": 32,
        "sample_rate": 30000.0,
    },
    "trials": {"ttl_line": 0},
    "outputs": {"decision_port": 5560, "control_port": 5561},
}


def _with(path: str, value):
    import copy

    data = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    return data


def test_rig_configs_exist():
    names = {p.name for p in RIG_CONFIGS}
    assert {"replay_local.toml", "neuropixels1_openephys.toml"} <= names


@pytest.mark.parametrize("path", RIG_CONFIGS, ids=lambda p: p.name)
def test_every_rig_config_validates(path):
    cfg = load_rig_config(path)
    assert isinstance(cfg, RigConfig)
    if cfg.stream.protocol == "zmq-interface":
        assert cfg.stream.heartbeat_port == cfg.stream.data_port + 1
    else:  # Falcon Output has no heartbeat socket
        assert cfg.stream.heartbeat_port is None


def test_neuropixels_config_is_384_channels_30k():
    cfg = load_rig_config(Path(__file__).parent.parent / "rig_configs" / "neuropixels1_openephys.toml")
    assert cfg.stream.channel_count == 384 and cfg.stream.sample_rate == 30000.0
    assert cfg.probe.model == "neuropixels1"


def test_defaults_filled_in():
    cfg = parse_rig_config(VALID)
    assert cfg.model.backend == "auto" and cfg.model.intra_op_threads == 1
    assert cfg.sorting.engine == "rtdecode" and cfg.sorting.motion_tracking is True


@pytest.mark.parametrize(
    ("path", "value", "expect"),
    [
        ("stream.data_port", 70000, "stream.data_port = 70000: Input should be less than or equal to 65535"),
        ("stream.channel_count", 0, "stream.channel_count = 0: Input should be greater than 0"),
        ("stream.heartbeat_port", 5599, "heartbeat_port must be data_port + 1 = 5557"),
        ("trials.ttl_line", -1, "trials.ttl_line = -1"),
        # the bundle owns the trial windows and the preprocessing: a rig config repeating one is refused
        ("trials.response_window_ms", [0, 250], "trials.response_window_ms: the decoder bundle owns"),
        ("trials.baseline_window_ms", [-200, 0], "trials.baseline_window_ms: the decoder bundle owns"),
        ("sorting.highpass_hz", 300.0, "sorting.highpass_hz: the decoder bundle owns the preprocessing"),
        ("sorting.common_reference", "median", "sorting.common_reference: the decoder bundle owns"),
        (
            "model.backend",
            "cuda",
            "model.backend = 'cuda': Input should be 'auto', 'onnxruntime', 'tensorrt', 'torch-cuda' or 'torch'",
        ),
        ("outputs.decision_port", 5556, "outputs.decision_port = 5556 collides with stream.data_port"),
        ("outputs.bind_host", "0.0.0.0", "set allow_remote = true"),
        ("sorting.engine", "kilosort", "sorting.engine = 'kilosort'"),
        ("outputs.colour", "red", "outputs.colour = 'red': Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_field_value_and_expectation(path, value, expect):
    with pytest.raises(ConfigError) as info:
        parse_rig_config(_with(path, value), source="x.toml")
    assert expect in str(info.value)
    assert str(info.value).startswith("x.toml: ")


def test_missing_section_is_named():
    data = {k: v for k, v in VALID.items() if k != "trials"}
    with pytest.raises(ConfigError, match=r"trials = \(missing\): Field required"):
        parse_rig_config(data)


def test_remote_bind_allowed_when_explicit_and_authenticated():
    keys = {"curve_server_key": "keys/server.key_secret", "curve_authorized_clients": "keys/clients"}
    out = {**VALID["outputs"], "bind_host": "0.0.0.0", "allow_remote": True}
    cfg = parse_rig_config(_with("outputs", {**out, **keys}))
    assert cfg.outputs.bind_host == "0.0.0.0" and cfg.outputs.curve
    with pytest.raises(ConfigError, match="nothing would authenticate its peers"):
        parse_rig_config(_with("outputs", out))


def test_network_events_port_collision():
    data = _with("outputs.network_events", {"port": 5556, "ttl_line": 1})
    with pytest.raises(ConfigError, match="outputs.network_events.port = 5556 collides with stream.data_port"):
        parse_rig_config(data)


def test_toml_syntax_error(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_rig_config(p)


def test_cli_config_check_ok(tmp_path):
    # A long path: the console must not wrap it (CI clones live deeper than dev checkouts).
    deep = tmp_path / ("rig-configs-of-a-lab-with-a-very-long-directory-name-" * 2)
    deep.mkdir()
    cfg = deep / RIG_CONFIGS[0].name
    cfg.write_text(RIG_CONFIGS[0].read_text())
    result = CliRunner().invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert f"{cfg} is a valid rig config" in result.output and "data_port" in result.output


def test_cli_config_check_bad_file_has_no_traceback(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\n[stream]\ndata_port = 1\n')
    proc = subprocess.run([sys.executable, "-m", "rtdecode", "config", "check", str(p)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "stream.data_port = 1: Input should be greater than or equal to 1024" in proc.stderr
    assert "trials = (missing)" in proc.stderr


def test_falcon_output_needs_no_heartbeat_port_and_the_zmq_interface_gets_data_port_plus_one():
    from rtdecode.config import StreamConfig

    base = {"stream_name": "ProbeA-AP", "channel_count": 384, "sample_rate": 30000.0}
    falcon = StreamConfig(protocol="falcon-output", data_port=3335, **base)
    assert falcon.heartbeat_port is None
    assert StreamConfig(data_port=5556, **base).heartbeat_port == 5557
    with pytest.raises(ValueError, match="heartbeat_port must be data_port \\+ 1 = 5557"):
        StreamConfig(data_port=5556, heartbeat_port=6000, **base)
    with pytest.raises(ValueError, match="protocol"):
        StreamConfig(protocol="falcon", data_port=3335, **base)


@pytest.mark.parametrize(
    ("windows", "expect"),
    [
        (
            {"response_ms": [250, 0], "baseline_ms": [-200, 0]},
            "windows.response_ms must be [start, end) with end > start",
        ),
        ({"response_ms": [0, math.inf], "baseline_ms": [-200, 0]}, "windows.response_ms.1 = inf"),
        ({"response_ms": [0, 250], "baseline_ms": [math.nan, 0]}, "windows.baseline_ms.0 = nan"),
        ({"response_ms": [0, 1e9], "baseline_ms": [-200, 0]}, "windows.response_ms.1 = 1000000000.0"),
    ],
)
def test_a_bundles_windows_are_finite_and_ordered(bundle, windows, expect):
    """The windows live in the bundle's manifest, so that is where they are checked."""
    import json

    from rtdecode.manifest import ManifestError, content_hashes, parse_manifest

    raw = json.loads((bundle / "manifest.json").read_text())
    raw["windows"] = windows
    raw["content_sha256"] = content_hashes(raw)
    with pytest.raises(ManifestError, match=re.escape(expect)):
        parse_manifest(raw)
