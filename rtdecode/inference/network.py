"""The decoder network: torchvision GoogLeNet with a 2-class head (the seed paper's transfer learning).

It lives in the library because the ``torch`` backend rebuilds it from a bundle's ``model.pt``; the
builder (``rtdecode.offline.model``) trains it, and exports it to the bundle's ONNX graph. The head
reads either the global-pooled 1024-d features (``tap=None``) or an intermediate inception block
pooled to a ``grid x grid`` map (``tap='inception3b'``), which keeps where things are in the image.
The bundle's manifest names ``architecture = {name, tap, grid}``.

Another network, :mod:`rtdecode.inference.efficientnet`
(``architecture.name = "efficientnet-lite0"``), is an ImageNet-pretrained backbone that installs
everywhere. The other decoder a bundle can hold (``architecture.name = "linear"``) is
:class:`LinearImageDecoder`: a logistic regression on the neural image folded into one affine map of
the network input's grey channel, exported and run by the same backends
(``rtdecode build --decoder linear``).
"""

from __future__ import annotations

import torch
from torchvision.models import GoogLeNet

#: GoogLeNet's layers in forward order, and the channels of the taps a head can read.
LAYERS = (
    "conv1",
    "maxpool1",
    "conv2",
    "conv3",
    "maxpool2",
    "inception3a",
    "inception3b",
    "maxpool3",
    "inception4a",
    "inception4b",
    "inception4c",
    "inception4d",
    "inception4e",
    "maxpool4",
    "inception5a",
    "inception5b",
)
TAP_CHANNELS = {"inception3b": 480, "inception4e": 832, "inception5b": 1024}
FEATURE_DIM = 1024


class DecoderNet(torch.nn.Module):
    """GoogLeNet backbone + linear 2-class head on global features or a pooled intermediate map."""

    def __init__(self, base: GoogLeNet, tap: str | None = None, grid: int = 6, num_classes: int = 2) -> None:
        super().__init__()
        if tap is not None and tap not in TAP_CHANNELS:
            raise ValueError(f"tap must be one of {sorted(TAP_CHANNELS)} or None, got {tap!r}")
        self.base = base
        self.base.fc = torch.nn.Identity()
        self.tap = tap
        self.grid = grid
        self.pool = torch.nn.AdaptiveAvgPool2d(grid) if tap else torch.nn.Identity()
        self.embed_dim = TAP_CHANNELS[tap] * grid * grid if tap else FEATURE_DIM
        self.fc = torch.nn.Linear(self.embed_dim, num_classes)

    def embed(self, x):
        if self.tap is None:
            return self.base(x)
        for name in LAYERS:
            x = getattr(self.base, name)(x)
            if name == self.tap:
                break
        return torch.flatten(self.pool(x), 1)

    def forward(self, x):
        return self.fc(self.embed(x))


def googlenet_base(seed: int = 0) -> GoogLeNet:
    """torchvision GoogLeNet without auxiliary heads or input transform, seeded random init."""
    torch.manual_seed(seed)
    return GoogLeNet(num_classes=1000, aux_logits=False, transform_input=False, init_weights=True)


def decoder_net(
    num_classes: int = 2, tap: str | None = None, grid: int = 6, seed: int = 0, base_state: dict | None = None
) -> DecoderNet:
    """A :class:`DecoderNet`; ``base_state`` (an ImageNet GoogLeNet state dict) loads the backbone.

    Raises ``KeyError`` naming the keys when ``base_state`` is not a GoogLeNet state dict."""
    base = googlenet_base(seed)
    if base_state is not None:
        missing, unexpected = base.load_state_dict(base_state, strict=False)
        if missing or unexpected:
            raise KeyError(f"missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}")
    return DecoderNet(base, tap=tap, grid=grid, num_classes=num_classes)


def tap_grid(image_size: int, tap: str, max_grid: int = 6) -> int:
    """The largest pooling grid <= ``max_grid`` that divides the tap's map at ``image_size`` (so the
    pooling exports to ONNX as a plain average pool)."""
    base = GoogLeNet(num_classes=1000, aux_logits=False, transform_input=False, init_weights=False).eval()
    x = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        for name in LAYERS:
            x = getattr(base, name)(x)
            if name == tap:
                break
    side = int(x.shape[-1])
    return max(d for d in range(1, max_grid + 1) if side % d == 0)


class LinearImageDecoder(torch.nn.Module):
    """Logits ``(0, w . x + b)`` of the input's grey channel ``x`` (``(n, 3, S, S)`` in, ``(n, 2)`` out):
    a logistic regression (with its standardisation and projection folded in) as one linear layer,
    so the softmax of the logits is the regression's p(artificial), p(natural)."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.fc = torch.nn.Linear(self.image_size * self.image_size, 2)

    def forward(self, x):
        return self.fc(torch.flatten(x[:, 0], 1))


def bundle_network(architecture: dict, image_size: int) -> torch.nn.Module:
    """The network a bundle's ``architecture`` names, uninitialised (load ``model.pt`` into it)."""
    name = architecture.get("name")
    if name == "linear":
        return LinearImageDecoder(image_size)
    if name == "efficientnet-lite0":
        from rtdecode.inference.efficientnet import efficientnet_decoder, parse_tap

        return efficientnet_decoder(image_size, parse_tap(architecture.get("tap")), grid=architecture.get("grid", 6))
    return decoder_net(2, tap=architecture.get("tap"), grid=architecture.get("grid", 6))
