"""Decoder bundles: atomic writes, hash verification, stream checks, ONNX parity, backends."""

import json
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from rtdecode.bundle import Bundle, BundleError, read_manifest, verify_bundle, write_bundle
from rtdecode.inference.select import make_backend


def _writable_copy(bundle, tmp_path):
    dst = tmp_path / "copy.bundle"
    shutil.copytree(bundle, dst)
    for p in dst.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return dst


def test_fresh_bundle_verifies_and_is_read_only(bundle):
    manifest = verify_bundle(bundle)
    names = {"templates.npz", "baseline.npz", "preferred_stimuli.npy", "model.onnx", "model.pt", "report.json"}
    assert names <= set(manifest.files)
    assert manifest.channel_count == 16 and manifest.sample_rate == 30000.0
    assert manifest.image_size == 32 and manifest.class_names == ("artificial", "natural")
    assert set(manifest.content_sha256) == set(manifest.model_dump()) - {"content_sha256"}
    for p in bundle.iterdir():
        assert not p.stat().st_mode & stat.S_IWUSR, p.name
    assert not list(bundle.parent.glob(".*tmp-*"))  # no temp dir left behind
    b = Bundle.load(bundle)
    assert b.templates.shape[0] == b.n_units == len(b.baseline_mean) == len(b.preferred_stimuli)
    assert b.preferred_stimuli.shape[1] == 32 * 32


@pytest.mark.parametrize(
    "name", ["templates.npz", "baseline.npz", "preferred_stimuli.npy", "model.onnx", "report.json"]
)
def test_one_flipped_byte_is_caught_and_named(bundle, tmp_path, name):
    b = _writable_copy(bundle, tmp_path)
    data = bytearray((b / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (b / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} is corrupted"):
        verify_bundle(b)
    proc = subprocess.run(
        [sys.executable, "-m", "rtdecode", "bundle", "verify", str(b)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and f"{name} is corrupted" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_and_extra_files(bundle, tmp_path):
    b = _writable_copy(bundle, tmp_path)
    (b / "stray.txt").write_text("x")
    with pytest.raises(BundleError, match="files not in the manifest: stray.txt"):
        verify_bundle(b)
    (b / "stray.txt").unlink()
    (b / "model.onnx").unlink()
    with pytest.raises(BundleError, match="model.onnx is listed in the manifest but missing"):
        verify_bundle(b)
    with pytest.raises(BundleError, match="no such bundle"):
        read_manifest(tmp_path / "nothing")


def test_stream_mismatch_is_refused_naming_both_values(bundle):
    b = Bundle.load(bundle)
    b.check_stream(16, 30000.0)
    with pytest.raises(BundleError, match="channel count: bundle 16, rig config 384"):
        b.check_stream(384, 30000.0)
    with pytest.raises(BundleError, match="sample rate: bundle 30000.0 Hz, stream 25000.0 Hz"):
        b.check_stream(16, 25000.0, source="stream")


def _manifest_fields(bundle) -> dict:
    """A valid manifest's fields (what a builder passes to write_bundle)."""
    raw = json.loads((bundle / "manifest.json").read_text())
    return {k: v for k, v in raw.items() if k not in ("schema_version", "created_at", "files", "content_sha256")}


def test_write_is_atomic_and_refuses_incomplete(bundle, tmp_path):
    fields = _manifest_fields(bundle)
    with pytest.raises(BundleError, match="missing"):
        write_bundle(tmp_path / "b", fields, {"model.onnx": b"x"})
    assert not (tmp_path / "b").exists() and not list(tmp_path.iterdir())
    files = {
        n: b"data" for n in ("templates.npz", "baseline.npz", "preferred_stimuli.npy", "model.onnx", "report.json")
    }
    write_bundle(tmp_path / "b", {**fields, "target": "one"}, files)
    with pytest.raises(BundleError, match="exists"):
        write_bundle(tmp_path / "b", {**fields, "target": "two"}, files)
    write_bundle(tmp_path / "b", {**fields, "target": "three"}, files, overwrite=True)
    assert read_manifest(tmp_path / "b").target == "three"
    assert not list(tmp_path.glob(".b.*"))  # neither temp nor old copies left behind


def test_an_invalid_manifest_is_never_written(bundle, tmp_path):
    files = {
        n: b"data" for n in ("templates.npz", "baseline.npz", "preferred_stimuli.npy", "model.onnx", "report.json")
    }
    fields = _manifest_fields(bundle)
    del fields["windows"]
    with pytest.raises(BundleError, match=r"does not validate: windows = \(missing\)"):
        write_bundle(tmp_path / "b", fields, files)
    assert not (tmp_path / "b").exists()


def _rewrite_manifest(b, edit) -> None:
    path = b / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw, indent=2))


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        (
            lambda m: m.update(class_names=["natural", "artificial"]),
            "class_names was edited after the bundle was written",
        ),
        (lambda m: m["windows"].update(response_ms=[0.0, 300.0]), "windows was edited after the bundle was written"),
        (lambda m: m.pop("ttl_line"), "ttl_line was removed"),
        (lambda m: m.update(extra_field=1), "extra_field was added"),
        (lambda m: m.pop("content_sha256"), "content_sha256 is missing"),
        (lambda m: m.update(schema_version=1), "schema_version 1: this rtdecode reads bundles of schema 2"),
    ],
)
def test_an_edited_manifest_is_refused_naming_the_field(bundle, tmp_path, edit, expect):
    b = _writable_copy(bundle, tmp_path)
    _rewrite_manifest(b, edit)
    with pytest.raises(BundleError, match=expect):
        verify_bundle(b)
    proc = subprocess.run(
        [sys.executable, "-m", "rtdecode", "bundle", "verify", str(b)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and expect in proc.stderr and "Traceback" not in proc.stderr


def test_a_wrong_type_with_consistent_hashes_is_named(bundle, tmp_path):
    """Even with the content hashes recomputed (a deliberate edit), the schema refuses wrong types."""
    from rtdecode.manifest import content_hashes

    b = _writable_copy(bundle, tmp_path)

    def edit(m):
        m["channel_count"] = "sixteen"
        m["content_sha256"] = content_hashes(m)

    _rewrite_manifest(b, edit)
    with pytest.raises(BundleError, match="channel_count = 'sixteen': Input should be a valid integer"):
        read_manifest(b)


def test_build_report_holds_the_cross_validated_estimate_and_the_extra_training_data(bundle):
    rep = json.loads((bundle / "report.json").read_text())
    n = len(rep["calibration_trials"])
    assert rep["heldout"]["n_trials"] == n and len(rep["heldout"]["p_natural_calibrated"]) == n
    assert rep["train_sessions"] == ["M0", "M1"] and rep["n_training_images"] > 2 * n  # M2 + the extra animals
    assert rep["onnx_parity"]["max_abs_diff"] < 1e-3 and rep["onnx_parity"]["logit_std_across_inputs"] > 1e-3
    assert rep["sorting"]["method"] == "ground-truth"


def test_backends_agree(bundle):
    b = Bundle.load(bundle)
    ort, ref, auto = (make_backend(kind, b) for kind in ("onnxruntime", "torch", "auto"))
    assert auto.name == "onnxruntime" and "CPUExecutionProvider" in ort.device
    x = np.random.default_rng(0).normal(0, 1, ort.input_shape).astype(np.float32)
    np.testing.assert_allclose(ort.infer(x), ref.infer(x), atol=1e-3, rtol=1e-4)
    ort.warmup(2)


@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(bundle, tmp_path):
    b = Bundle.load(bundle)
    trt = make_backend("tensorrt", b, engine_cache_dir=tmp_path / "engines")
    ort = make_backend("onnxruntime", b)
    x = np.random.default_rng(1).normal(0, 1, ort.input_shape).astype(np.float32)
    np.testing.assert_allclose(trt.infer(x), ort.infer(x), atol=1e-2)
    assert list((tmp_path / "engines").glob("engine-*.plan"))
    again = make_backend("tensorrt", b, engine_cache_dir=tmp_path / "engines")  # from the cache
    np.testing.assert_allclose(again.infer(x), trt.infer(x), atol=1e-5)


def test_engine_build_without_gpu_says_why(bundle):
    from rtdecode.inference.select import tensorrt_available

    if tensorrt_available() is None:
        pytest.skip("TensorRT is available here; the no-GPU message cannot be checked")
    proc = subprocess.run(
        [sys.executable, "-m", "rtdecode", "engine", "build", str(bundle)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "cannot build a TensorRT engine here" in proc.stderr and "Traceback" not in proc.stderr


def test_the_int8_model_is_stored_with_its_agreement_or_refused_with_the_reason(bundle):
    from rtdecode.inference.base import BackendUnavailable

    m = verify_bundle(bundle)
    b = Bundle.load(bundle)
    assert m.int8 is not None and m.int8.n_heldout > 0 and m.int8.n_calibration > 0
    rep = json.loads((bundle / "report.json").read_text())["int8"]
    assert rep == m.int8.model_dump()
    if not m.int8.included:  # the builder refused it: no file, and the reason on request
        assert "model.int8.onnx" not in m.files and m.int8.agreement < 0.99
        with pytest.raises(BackendUnavailable, match="has no INT8 model .*below 99%"):
            make_backend("onnxruntime", b, precision="int8")
        return
    assert "model.int8.onnx" in m.files and m.int8.agreement >= 0.99
    int8 = make_backend("onnxruntime", b, precision="int8")
    fp32 = make_backend("onnxruntime", b)
    x = np.random.default_rng(3).normal(0, 1, fp32.input_shape).astype(np.float32)
    assert int8.infer(x).shape == fp32.infer(x).shape == (1, 2)
    with pytest.raises(BackendUnavailable, match="precision int8 runs the bundle's INT8 model on ONNX Runtime"):
        make_backend("torch", b, precision="int8")
