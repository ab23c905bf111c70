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
