"""The decoder bundle (DESIGN section 4): write atomically, verify every hash, load, check fit.

A bundle is a directory, read-only once written::

    manifest.json            schema version, provenance, stream facts, windows, classes, image size,
                             normalisation, units, the sha256 of every other file, and the sha256
                             of each of its own fields (``rtdecode.manifest``)
    templates.npz            unit_ids, templates (uV, daemon preprocessing), nbefore, sparsity, noise_levels;
                             where the calibration's peaks lie along the shank (depth_profile_um,
                             depth_profile_peaks, depth_profile_shifts_um; the motion tracker's reference)
    baseline.npz             unit_ids, mean, std (Hz) of the baseline window, fit on calibration trials
    preferred_stimuli.npy    (units, H, W) float32
    model.onnx               static (1, 3, H, W) -> (1, 2) logits
    model.pt                 the same network's torch state dict (reference backend)
    model.int8.onnx          (optional) the INT8 QDQ model, when it agrees with fp32 on >= 99 % of held-out inputs
    report.json              how it was built and how well it did on held-out trials

It is written into a temporary sibling directory and renamed into place, so a reader never sees a
half-written bundle. A TensorRT engine is never inside it: engines are cached next to it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtdecode.core.responses import BaselineStats
from rtdecode.errors import RtdecodeError
from rtdecode.manifest import (
    CLASS_NAMES,
    SCHEMA_VERSION,
    Manifest,
    ManifestContent,
    ManifestError,
    finish_manifest,
    parse_manifest,
)
from rtdecode.sorting.motion import DepthProfile
from rtdecode.sorting.templates import Templates

__all__ = ["CLASS_NAMES", "SCHEMA_VERSION", "Bundle", "BundleError", "Manifest", "read_manifest", "verify_bundle"]
REQUIRED_FILES = ("templates.npz", "baseline.npz", "preferred_stimuli.npy", "model.onnx", "report.json")


class BundleError(RtdecodeError):
    """A bundle that is missing, corrupted, or does not fit the rig."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_bundle(out: str | Path, manifest: dict[str, Any], files: dict[str, bytes], overwrite: bool = False) -> Path:
    """Write ``files`` (name -> bytes) and ``manifest`` (hashes added) atomically to ``out``."""
    out = Path(out)
    missing = [f for f in REQUIRED_FILES if f not in files]
    if missing:
        raise BundleError(f"refusing to write an incomplete bundle: missing {', '.join(missing)}")
    if out.exists() and not overwrite:
        raise BundleError(f"{out} exists; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        hashes = {}
        for name, data in files.items():
            (tmp / name).write_bytes(data)
            hashes[name] = sha256_bytes(data)
        fields = {"created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **manifest, "files": hashes}
        try:
            full = finish_manifest(fields)
        except ManifestError as err:
            raise BundleError(f"refusing to write {out}: its manifest does not validate: {err}") from None
        (tmp / "manifest.json").write_text(json.dumps(full, indent=2))
        for p in tmp.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
            p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            _rmtree(old)
        else:
            os.replace(tmp, out)
    except BaseException:
        _rmtree(tmp)
        raise
    return out


@dataclass(frozen=True)
class BundleContents:
    """Everything a bundle holds, typed: the one way a bundle is written (``rtdecode build`` and the
    benchmarks' timing bundles). The file layout (the table above) is made here and only here, and
    the parts are checked against each other before anything is written."""

    manifest: ManifestContent
    templates: Templates
    baseline: BaselineStats
    preferred_stimuli: np.ndarray  # (units, H, W) float32
    model_onnx: Path
    model_pt: Path
    report: dict
    model_int8_onnx: Path | None = None  # included when the INT8 model agrees with fp32 (manifest.int8)
    figures: dict[str, bytes] = field(default_factory=dict)  # name.png -> PNG bytes (e.g. calibration.png)

    def problems(self) -> list[str]:
        m, t = self.manifest, self.templates
        n, size = t.n_units, m.image_size
        checks = [
            ("manifest n_units", m.n_units, n),
            ("manifest unit_ids", m.unit_ids, t.unit_ids.tolist()),
            ("baseline units", len(self.baseline.mean), n),
            ("preferred_stimuli", tuple(self.preferred_stimuli.shape), (n, size, size)),
            ("manifest channel_count", m.channel_count, t.n_channels),
            ("INT8 model", self.model_int8_onnx is not None, m.int8 is not None and m.int8.included),
        ]
        return [f"{name} is {got}, expected {want}" for name, got, want in checks if got != want]

    def files(self) -> dict[str, bytes]:
        t, b = self.templates, self.baseline
        files = {
            "templates.npz": npz_bytes(
                channel_positions=t.channel_positions,
                unit_ids=t.unit_ids,
                templates=t.templates,
                nbefore=np.array(t.nbefore),
                sparsity=t.sparsity,
                noise_levels=t.noise_levels,
                **_depth_profile_arrays(t.depth_profile),
            ),
            "baseline.npz": npz_bytes(unit_ids=t.unit_ids, mean=b.mean, std=b.std, fit_trials=b.fit_trials),
            "preferred_stimuli.npy": npy_bytes(np.asarray(self.preferred_stimuli, dtype=np.float32)),
            "model.onnx": Path(self.model_onnx).read_bytes(),
            "model.pt": Path(self.model_pt).read_bytes(),
            "report.json": json.dumps(self.report, indent=1, default=float).encode(),
            **self.figures,
        }
        if self.model_int8_onnx is not None:
            files["model.int8.onnx"] = Path(self.model_int8_onnx).read_bytes()
        return files

    def write(self, out: str | Path, overwrite: bool = False) -> Path:
        problems = self.problems()
        if problems:
            raise BundleError(f"refusing to write {out}: its parts do not fit together: " + "; ".join(problems))
        return write_bundle(out, self.manifest.model_dump(mode="json"), self.files(), overwrite=overwrite)


def _depth_profile_arrays(profile: DepthProfile | None) -> dict[str, np.ndarray]:
    if profile is None:
        return {}
    return {
        "depth_profile_um": profile.centres_um,
        "depth_profile_peaks": profile.peaks,
        "depth_profile_shifts_um": profile.shifts_um,
    }


def _depth_profile_of(npz) -> DepthProfile | None:
    if "depth_profile_um" not in npz:
        return None  # a bundle built before the builder recorded one
    return DepthProfile(npz["depth_profile_um"], npz["depth_profile_peaks"], npz["depth_profile_shifts_um"])


def _rmtree(path: Path) -> None:
    if not path.exists():
        return
    for p in path.rglob("*"):
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(path)


def read_manifest(path: str | Path) -> Manifest:
    """The bundle's typed manifest; :class:`BundleError` names the field that does not fit."""
    path = Path(path)
    mf = path / "manifest.json"
    if not path.is_dir():
        raise BundleError(f"{path}: no such bundle directory")
    if not mf.is_file():
        raise BundleError(f"{path}: manifest.json is missing; not a decoder bundle")
    try:
        raw = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise BundleError(f"{mf}: not valid JSON ({err})") from None
    try:
        return parse_manifest(raw)
    except ManifestError as err:
        raise BundleError(f"{mf}: {err}") from None


def verify_bundle(path: str | Path) -> Manifest:
    """Check the manifest (schema, types, its own content hashes) and every file's sha256; raise
    :class:`BundleError` naming the first bad field or file."""
    path = Path(path)
    manifest = read_manifest(path)
    hashes = manifest.files
    missing = [f for f in REQUIRED_FILES if f not in hashes]
    if missing:
        raise BundleError(f"{path}/manifest.json: lists no hash for {', '.join(missing)}")
    for name, want in hashes.items():
        p = path / name
        if not p.is_file():
            raise BundleError(f"{path}: {name} is listed in the manifest but missing")
        got = sha256_file(p)
        if got != want:
            raise BundleError(f"{path}: {name} is corrupted: sha256 {got[:16]}... but the manifest says {want[:16]}...")
    extra = sorted(p.name for p in path.iterdir() if p.name not in hashes and p.name != "manifest.json")
    if extra:
        raise BundleError(f"{path}: files not in the manifest: {', '.join(extra)}")
    return manifest


@dataclass
class Bundle:
    """A verified bundle in memory (what the daemon needs)."""

    path: Path
    manifest: Manifest
    unit_ids: np.ndarray
    templates: np.ndarray
    nbefore: int
    sparsity: np.ndarray
    noise_levels: np.ndarray
    baseline_mean: np.ndarray
    baseline_std: np.ndarray
    preferred_stimuli: np.ndarray  # (units, H*W) float32
    channel_positions: np.ndarray  # (channels, 2) um
    depth_profile: DepthProfile | None = None  # the calibration's peaks along the shank, if recorded

    @property
    def n_units(self) -> int:
        return len(self.unit_ids)

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> Bundle:
        path = Path(path)
        manifest = verify_bundle(path) if verify else read_manifest(path)
        with np.load(path / "templates.npz") as t, np.load(path / "baseline.npz") as b:
            ps = np.load(path / "preferred_stimuli.npy")
            bundle = cls(
                path=path,
                manifest=manifest,
                unit_ids=t["unit_ids"],
                templates=t["templates"],
                nbefore=int(t["nbefore"]),
                sparsity=t["sparsity"],
                noise_levels=t["noise_levels"],
                baseline_mean=b["mean"],
                baseline_std=b["std"],
                preferred_stimuli=ps.reshape(len(ps), -1).astype(np.float32),
                channel_positions=t["channel_positions"],
                depth_profile=_depth_profile_of(t),
            )
        bundle._check_consistent()
        return bundle

    def _check_consistent(self) -> None:
        n = self.n_units
        for name, m in (
            ("templates", len(self.templates)),
            ("baseline", len(self.baseline_mean)),
            ("preferred_stimuli", len(self.preferred_stimuli)),
            ("manifest n_units", self.manifest.n_units),
        ):
            if m != n:
                raise BundleError(f"{self.path}: {name} has {m} units but templates.npz lists {n} unit ids")
        if self.templates.shape[2] != self.manifest.channel_count:
            raise BundleError(
                f"{self.path}: templates have {self.templates.shape[2]} channels, manifest says "
                f"{self.manifest.channel_count}"
            )
        if self.preferred_stimuli.shape[1] != self.manifest.image_size**2:
            raise BundleError(
                f"{self.path}: preferred_stimuli has {self.preferred_stimuli.shape[1]} pixels, the manifest's "
                f"image_size {self.manifest.image_size} needs {self.manifest.image_size**2}"
            )

    def check_stream(self, channel_count: int, sample_rate: float, source: str = "rig config") -> None:
        """Refuse a stream whose channel count or sample rate differs from the bundle's."""
        problems = []
        m = self.manifest
        if int(channel_count) != m.channel_count:
            problems.append(f"channel count: bundle {m.channel_count}, {source} {channel_count}")
        if abs(float(sample_rate) - m.sample_rate) > 1e-6:
            problems.append(f"sample rate: bundle {m.sample_rate} Hz, {source} {sample_rate} Hz")
        if problems:
            raise BundleError(f"{self.path} does not fit the {source}: " + "; ".join(problems))


def summary(manifest: Manifest) -> dict:
    """The parts of a manifest a person wants to see (for ``rtdecode bundle info``)."""
    keys = (
        "schema_version",
        "created_at",
        "target",
        "train_sessions",
        "templates_method",
        "n_units",
        "channel_count",
        "sample_rate",
        "ttl_line",
        "image_size",
        "windows",
        "preprocessing",
        "class_names",
        "normalisation",
        "classifier",
        "architecture",
        "heldout_accuracy",
        "versions",
        "files",
    )
    d = manifest.model_dump(mode="json")
    return {k: d[k] for k in keys}
