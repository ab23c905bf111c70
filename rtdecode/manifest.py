"""The decoder bundle's manifest as a typed, versioned schema (pydantic).

Every field the daemon, the offline decoder or a backend reads is declared here with its type,
so a manifest with a key removed, a field of the wrong type or another schema version is refused
with the field named -- never half-read. The manifest's own content is hashed field by field
(``content_sha256``): an edited field (say, the class names swapped) is named and refused by
``rtdecode bundle verify`` and by the daemon, like a corrupted file.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 2
#: Class index 0 and 1 of every bundle's network (the builder trains label 1 = natural).
CLASS_NAMES = ("artificial", "natural")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: Milliseconds from onset: finite (no inf, no NaN) and within a minute either side.
Ms = Annotated[float, Field(allow_inf_nan=False, ge=-60_000, le=60_000)]


class Windows(_Part):
    """The trial windows, half-open [start, end) ms from onset; the daemon and the builder use these."""

    response_ms: tuple[Ms, Ms]
    baseline_ms: tuple[Ms, Ms]

    @model_validator(mode="after")
    def _ordered(self) -> Windows:
        for name in ("response_ms", "baseline_ms"):
            start, end = getattr(self, name)
            if not end > start:
                raise ValueError(f"windows.{name} must be [start, end) with end > start, got {[start, end]}")
        return self


class Preprocessing(_Part):
    """The preprocessing the templates were computed on; the rig's must be the same."""

    highpass_hz: float = Field(gt=0)
    order: int = Field(ge=1)
    reference: Literal["median", "average", "none"]
    filter: str | None = None

    @classmethod
    def defaults(cls) -> Preprocessing:
        """The builder's defaults (the parameter table's ``build.*``)."""
        from rtdecode.parameters import default

        return cls(
            highpass_hz=default("build.highpass_hz"),
            order=default("build.filter_order"),
            reference=default("build.common_reference"),
        )


class Normalisation(_Part):
    mean: float
    std: float = Field(gt=0)
    image_size: int = Field(gt=0)


class Architecture(_Part):
    """The decoder: GoogLeNet (the paper's, default), EfficientNet-Lite0 (an ImageNet-pretrained
    backbone available everywhere) or a linear read-out of the neural image."""

    name: Literal["googlenet", "efficientnet-lite0", "linear"] = "googlenet"
    tap: str | None = None
    grid: int = Field(6, ge=1)
    pcs: int | None = Field(None, ge=1)  # linear: principal components it was fit on (None: pixels)
    pretrained: bool | None = None  # the backbone started from ImageNet weights


class ProbabilityCalibration(_Part):
    """How the network's p(natural) is made to mean what it says: logits divided by ``temperature``
    before the softmax (fit on held-out calibration trials), applied by the decoder for every backend."""

    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0)
    n_trials: int = Field(ge=0)
    brier_before: float | None = None
    brier_after: float | None = None


class Int8(_Part):
    """The bundle's INT8 model (``model.int8.onnx``), or why it was left out."""

    included: bool
    agreement: float = Field(ge=0, le=1)
    n_heldout: int
    n_calibration: int
    max_abs_logit_diff: float
    reason: str | None = None


class Calibration(_Part):
    fraction: float
    seed: int
    n_trials: int
    folds: int | None = None  # cross-validation folds of the held-out estimate and the temperature
    spikes: str | None = None  # whose spikes the responses were counted from ("online" or "sorter")


class ManifestContent(_Part):
    """What a bundle's writer says of it (:class:`~rtdecode.bundle.BundleContents`); the writer adds
    the schema version, the time, the files' hashes and its own content hashes (:class:`Manifest`)."""

    target: str
    train_sessions: list[str]
    templates_method: str
    sample_rate: float = Field(gt=0)
    channel_count: int = Field(gt=0)
    stream_name: str | None = None
    channel_map: list[int]
    probe: str | None = None
    first_sample_number: int
    ttl_line: int = Field(ge=0)
    windows: Windows
    preprocessing: Preprocessing
    class_names: tuple[Literal["artificial"], Literal["natural"]]
    image_size: int = Field(gt=0)
    normalisation: Normalisation
    n_units: int = Field(ge=1)
    unit_ids: list[int]
    classifier: str
    architecture: Architecture
    int8: Int8 | None = None
    heldout_accuracy: float | None = None
    calibration: Calibration | None = None
    probability: ProbabilityCalibration | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)


class Manifest(ManifestContent):
    schema_version: Literal[2]
    created_at: str
    files: dict[str, str]
    content_sha256: dict[str, str]


class ManifestError(ValueError):
    """The manifest's content does not validate or was edited; the message names the field."""


def _field_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def content_hashes(fields: dict[str, Any]) -> dict[str, str]:
    """sha256 of every top-level field's canonical JSON (``content_sha256`` itself excluded)."""
    return {k: _field_hash(v) for k, v in fields.items() if k != "content_sha256"}


def check_content(raw: dict[str, Any]) -> None:
    """Raise :class:`ManifestError` naming every field edited, added or removed since writing."""
    want = raw.get("content_sha256")
    if not isinstance(want, dict):
        raise ManifestError("content_sha256 is missing: the manifest's own content is not covered by a hash")
    got = content_hashes(raw)
    problems = [
        f"{k} was edited after the bundle was written" for k in sorted(set(got) & set(want)) if got[k] != want[k]
    ]
    problems += [f"{k} was removed" for k in sorted(set(want) - set(got))]
    problems += [f"{k} was added" for k in sorted(set(got) - set(want))]
    if problems:
        raise ManifestError("; ".join(problems))


def parse_manifest(raw: Any) -> Manifest:
    """Validate a parsed manifest; :class:`ManifestError` names each bad field and what it expected."""
    if not isinstance(raw, dict):
        raise ManifestError(f"expected a JSON object, got {type(raw).__name__}")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ManifestError(
            f"schema_version {version!r}: this rtdecode reads bundles of schema {SCHEMA_VERSION} "
            "(rebuild the bundle with this version's `rtdecode build`)"
        )
    check_content(raw)
    try:
        return Manifest.model_validate(raw)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            shown = "(missing)" if e["type"] == "missing" else repr(e.get("input"))[:80]
            lines.append(f"{loc} = {shown}: {e['msg']}")
        raise ManifestError("; ".join(lines)) from None


def finish_manifest(fields: dict[str, Any]) -> dict[str, Any]:
    """Add the schema version and the content hashes, validate, and return the JSON-ready dict."""
    full = {"schema_version": SCHEMA_VERSION, **fields}
    full["content_sha256"] = content_hashes(full)
    parse_manifest(json.loads(json.dumps(full)))
    return full
