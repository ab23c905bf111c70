"""Example rig configurations, shipped with the package (import name ``rtdecode.rig_configs``).

Found through :mod:`importlib.resources`, so they are there in an installed wheel as in a checkout.
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path


def names() -> list[str]:
    """The shipped configs' file names."""
    return sorted(p.name for p in files(__name__).iterdir() if p.name.endswith(".toml"))


def load(name: str):
    """A shipped rig config by file name (e.g. ``replay_local.toml``), validated."""
    from rtdecode.config import load_rig_config

    with as_file(files(__name__) / name) as path:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no shipped rig config {name!r}; shipped: {', '.join(names())}")
        return load_rig_config(path)
