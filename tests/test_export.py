"""The ONNX parity check can fail: on a wrong graph, and on a degenerate model."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from rtdecode.offline import model as gnet
from rtdecode.offline.export import ExportError, check_parity, export_onnx


@pytest.fixture(scope="module")
def calibrated_model():
    """A network whose outputs depend on its input (BatchNorm calibrated, random fc)."""
    m = gnet.build_googlenet(2, seed=0)
    x = np.random.default_rng(0).normal(0, 1, (16, 3, 32, 32)).astype(np.float32)
    gnet.calibrate_batchnorm(m, x)
    return m, x


def test_parity_passes_on_a_faithful_export(calibrated_model, tmp_path):
    m, x = calibrated_model
    path = export_onnx(m, tmp_path / "m.onnx", 32)
    res = check_parity(m, path, x)
    assert res.max_abs_diff < 1e-4 and res.logit_std_across_inputs > 1e-3 and res.argmax_agreement == 1.0
    g = onnx.load(path)
    assert [d.dim_value for d in g.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]


def test_parity_fails_on_a_wrong_graph(calibrated_model, tmp_path):
    m, x = calibrated_model
    path = export_onnx(m, tmp_path / "m.onnx", 32)
    g = onnx.load(path)
    init = max(g.graph.initializer, key=lambda t: np.prod(t.dims))  # the largest weight tensor
    w = numpy_helper.to_array(init).copy()
    w.flat[: w.size // 2] *= -1.0
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(g, tmp_path / "wrong.onnx")
    with pytest.raises(ExportError, match="ONNX and torch logits differ"):
        check_parity(m, tmp_path / "wrong.onnx", x)


def test_parity_refuses_a_degenerate_model(tmp_path):
    m = gnet.build_googlenet(2, seed=0).eval()  # torchvision random init: logits = bias for any input
    path = export_onnx(m, tmp_path / "d.onnx", 32)
    x = np.random.default_rng(1).normal(0, 1, (8, 3, 32, 32)).astype(np.float32)
    with pytest.raises(ExportError, match="degenerate"):
        check_parity(m, path, x)


def test_weights_file_is_verified(tmp_path):
    bad = tmp_path / "googlenet-1378be20.pth"
    bad.write_bytes(b"not the checkpoint")
    with pytest.raises(gnet.WeightsError, match="does not start with 1378be20"):
        gnet.find_weights(bad)
    with pytest.raises(gnet.WeightsError, match="no such file"):
        gnet.find_weights(tmp_path / "missing.pth")


def test_int8_quantization_keeps_the_decisions_or_is_refused(tmp_path):
    """Static QDQ INT8 of a BatchNorm-calibrated network: stored when its decisions agree with fp32's
    on >= 99 % of held-out inputs, refused (file removed, reason given) when they do not."""
    import torch
    from rtdecode.offline.export import export_onnx, quantize_int8
    from rtdecode.offline.model import calibrate_batchnorm

    from rtdecode.inference.network import decoder_net, tap_grid
    from rtdecode.inference.onnxruntime_backend import OnnxRuntimeBackend

    rng = np.random.default_rng(0)
    m = decoder_net(2, tap="inception3b", grid=tap_grid(64, "inception3b"))
    x = rng.normal(0, 1, (96, 3, 64, 64)).astype(np.float32)
    calibrate_batchnorm(m, x[:32])
    torch.nn.init.normal_(m.fc.weight, 0, 0.01)
    onnx_path = export_onnx(m, tmp_path / "m.onnx", 64)
    r = quantize_int8(onnx_path, tmp_path / "m.int8.onnx", x[:32], x[32:])
    print(r)
    assert r.path is not None and r.path.is_file() and r.reason is None
    assert r.agreement >= 0.99 and (r.n_calibration, r.n_heldout) == (32, 64)
    assert r.path.stat().st_size < 0.5 * onnx_path.stat().st_size  # int8 weights
    assert OnnxRuntimeBackend(r.path).infer(x[:1]).shape == (1, 2)
    refused = quantize_int8(onnx_path, tmp_path / "r.int8.onnx", x[:32], x[32:], min_agreement=1.01)
    assert refused.path is None and not (tmp_path / "r.int8.onnx").exists()
    assert "below 101%" in refused.reason
