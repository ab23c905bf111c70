"""The house's layers hold: library code never reaches up into the builder, simulator or replayer;
the rig configs ship inside the wheel; the README's parameter table is the parameter table."""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The only library modules allowed to import the tools above the library.
TOP = {"rtdecode/cli.py"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_library_module_imports_the_builder_or_the_replayer_not_even_inside_a_function():
    offenders = {}
    for path in sorted((ROOT / "rtdecode").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel in TOP:
            continue
        bad = sorted(m for m in _imports(path) if m.startswith(("rtdecode.offline", "rtdecode.replay")))
        if bad:
            offenders[rel] = bad
    assert offenders == {}


def test_importing_the_daemon_and_the_pipeline_loads_no_builder_simulator_or_replayer():
    code = (
        "import sys, rtdecode.daemon, rtdecode.pipeline, rtdecode.decode;"
        "print(sorted(m for m in sys.modules if m.startswith(('rtdecode.offline', 'rtdecode.replay'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_replayer_does_not_import_the_daemon():
    for path in (ROOT / "tools" / "replay").glob("*.py"):
        assert not any(m.startswith("rtdecode.daemon") for m in _imports(path)), path.name


def test_readme_parameter_table_is_the_parameter_table():
    from rtdecode.parameters import markdown_table

    assert markdown_table() in (ROOT / "README.md").read_text()


def test_shipped_rig_configs_load_through_importlib_resources():
    from rtdecode import rig_configs

    assert rig_configs.names() == [
        "neuropixels1_falcon_output.toml",
        "neuropixels1_openephys.toml",
        "replay_local.toml",
    ]
    assert rig_configs.load("replay_local.toml").name == "replay-local"
    falcon = rig_configs.load("neuropixels1_falcon_output.toml").stream
    assert (falcon.protocol, falcon.data_port, falcon.heartbeat_port) == ("falcon-output", 3335, None)
    with pytest.raises(FileNotFoundError, match="no shipped rig config 'nope.toml'"):
        rig_configs.load("nope.toml")


def test_the_wheel_holds_the_rig_configs_and_the_subpackages(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("rtdecode-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in (
        "rtdecode/rig_configs/replay_local.toml",
        "rtdecode/rig_configs/neuropixels1_openephys.toml",
        "rtdecode/rig_configs/__init__.py",
        "rtdecode/pipeline.py",
        "rtdecode/offline/sim/simulate.py",
        "rtdecode/offline/bench/online_bench.py",
        "rtdecode/replay/replayer.py",
    ):
        assert want in names, want
    assert not [n for n in names if n.startswith(("offline/", "tools/", "rig_configs/"))]


def test_protocol_names_are_written_only_in_the_stream_source_registry():
    """Adding an input protocol touches one module: no other code names one (rtdecode.stream.sources)."""
    from rtdecode.stream import sources

    names = sources.names()
    offenders = {}
    for top in ("rtdecode", "offline", "tools"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("rtdecode/stream/") and rel.endswith("_source.py"):
                continue
            text = path.read_text()
            hits = [n for n in names if f'"{n}"' in text or f"'{n}'" in text]
            if hits:
                offenders[rel] = hits
    assert offenders == {}
