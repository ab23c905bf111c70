"""The torch-cuda backend on a real GPU: parity with torch on the CPU, CUDA-graph replay equal to
eager, the static input really re-read per call. Needs only torch (with CUDA), torchvision, numpy
and pytest, so ``tools/gpu_check.sh`` runs it on a bare GPU machine; skipped with the reason
elsewhere."""

import numpy as np
import pytest

pytestmark = pytest.mark.cuda

SHAPE = (1, 3, 224, 224)


def responsive(net):
    """He-initialised weights: torchvision's GoogLeNet init (std 0.01) lets activations fade through
    its depth until the logits are the head's bias whatever the input, and a parity or stale-input
    check on such a network cannot fail."""
    import torch

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net


def _net(tap=None):
    import torch

    from rtdecode.inference.network import decoder_net

    torch.manual_seed(0)
    return responsive(decoder_net(2, tap=tap, grid=6))


def _efficientnet():
    import torch

    pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch is not installed here")
    from rtdecode.inference.efficientnet import efficientnet_decoder

    torch.manual_seed(0)
    return efficientnet_decoder(SHAPE[-1], tap=4, grid=4)


def _inputs(n):
    rng = np.random.default_rng(0)
    return [rng.normal(0, 1 + i, SHAPE).astype(np.float32) for i in range(n)]  # unlike enough to move the logits


@pytest.mark.parametrize("tap", [None, "inception3b"])
@pytest.mark.parametrize(("precision", "tol"), [("fp32", 2e-2), ("fp16", 6e-2)])
def test_torch_cuda_logits_match_torch_on_the_cpu(tap, precision, tol):
    import copy

    from rtdecode.inference.torch_backend import TorchBackend
    from rtdecode.inference.torch_cuda_backend import TorchCudaBackend

    net = _net(tap)
    cpu = TorchBackend(copy.deepcopy(net), SHAPE)
    gpu = TorchCudaBackend(net, SHAPE, precision)
    assert gpu.graph is not None and "CUDA graph" in gpu.device and precision in gpu.device
    wants = []
    for x in _inputs(3):
        want, got = cpu.infer(x), gpu.infer(x)
        wants.append(want)
        assert got.dtype == np.float32 and got.shape == want.shape == (1, 2)
        # fp32 on the GPU uses TF32 convolutions; fp16 halves the mantissa again
        assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()), (got, want)
    assert np.abs(wants[0] - wants[1]).max() > 10 * tol * max(1.0, np.abs(wants[0]).max())  # they depend on the input


@pytest.mark.parametrize(("precision", "tol"), [("fp32", 2e-2), ("fp16", 6e-2)])
def test_torch_cuda_runs_the_efficientnet_decoder_like_the_cpu(precision, tol):
    import copy

    from rtdecode.inference.torch_backend import TorchBackend
    from rtdecode.inference.torch_cuda_backend import TorchCudaBackend

    net = _efficientnet()
    cpu = TorchBackend(copy.deepcopy(net), SHAPE)
    gpu = TorchCudaBackend(net, SHAPE, precision)
    for x in _inputs(3):
        want, got = cpu.infer(x), gpu.infer(x)
        assert np.abs(got - want).max() <= tol * max(1.0, np.abs(want).max()), (got, want)


def test_graph_replay_equals_eager_and_reads_each_new_input():
    import copy

    from rtdecode.inference.torch_cuda_backend import TorchCudaBackend

    net = _net()
    graph = TorchCudaBackend(copy.deepcopy(net), SHAPE, "fp32", graphs=True)
    eager = TorchCudaBackend(net, SHAPE, "fp32", graphs=False)
    xs = _inputs(4)
    outs = [graph.infer(x) for x in xs]
    for x, out in zip(xs, outs, strict=True):
        np.testing.assert_allclose(out, eager.infer(x), atol=1e-4)
    assert np.abs(outs[0] - outs[1]).max() > 1e-6  # a stale input buffer would repeat the first logits
    graph.warmup(3)
    np.testing.assert_allclose(graph.infer(xs[2]), outs[2], atol=1e-5)  # replay is repeatable
